import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type NatsConnection } from 'nats'
import { freePort } from './process'

/** The shared NATS (with JetStream) the suite talks to: `NATS_URL`, default the local server. */
export const natsUrl = process.env.NATS_URL ?? 'nats://127.0.0.1:4222'

/** A connection to NATS; fails (never skips) when the server is unreachable. */
export async function connectNats(url = natsUrl): Promise<NatsConnection> {
  try {
    return await connect({ servers: url, timeout: 2000, reconnect: false })
  } catch (error) {
    throw new Error(`NATS at ${url} is unreachable (set NATS_URL): ${(error as Error).message}`)
  }
}

/** A name no other run uses, valid as a stream name and a subject token. */
export function uniqueName(label: string): string {
  return `ei_test_${label}_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`
}

/** A private nats-server with JetStream on a free port and a temp store: for tests that stop NATS. */
export interface OwnNats {
  url: string
  port: number
  stop(): Promise<void>
  /** Brings the server back on the same port, with the same store. */
  start(): Promise<void>
  dispose(): Promise<void>
}

export async function startOwnNats(): Promise<OwnNats> {
  const dir = mkdtempSync(join(tmpdir(), 'ei-nats-'))
  const port = await freePort()
  const url = `nats://127.0.0.1:${port}`
  let child: ChildProcess | undefined

  async function start() {
    child = spawn('/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { stdio: 'ignore' })
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        const nc = await connectNats(url)
        await nc.jetstreamManager()
        await nc.close()
        return
      } catch (error) {
        if (Date.now() > deadline) throw error
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  }

  async function stop() {
    const running = child
    if (!running || running.exitCode !== null || running.signalCode !== null) return
    const exited = new Promise((r) => running.once('exit', r))
    running.kill('SIGKILL')
    await exited
  }

  await start()
  return {
    url,
    port,
    start,
    stop,
    async dispose() {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
