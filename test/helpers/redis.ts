import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Redis from 'ioredis'

/** The shared Redis the suite talks to: `REDIS_URL`, default the local server. */
export const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

/** Fails (never skips) when the Redis the suite needs is unreachable. */
export async function requireRedis(url = redisUrl): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null })
  // The failure is thrown below; without a listener ioredis would also print it as unhandled.
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
  } catch (error) {
    throw new Error(`Redis at ${url} is unreachable (set REDIS_URL): ${(error as Error).message}`)
  } finally {
    client.disconnect()
  }
}

/** A key prefix no other run uses. */
export function uniquePrefix(label: string): string {
  return `ei-test-${label}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`
}

/** Deletes this run's keys (and only those) from the shared Redis. */
export async function deletePrefix(prefix: string, url = redisUrl): Promise<void> {
  const client = new Redis(url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  try {
    let cursor = '0'
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await client.unlink(...keys)
    } while (cursor !== '0')
  } finally {
    client.disconnect()
  }
}

import { freePort } from './process'

export { freePort }

/** A private redis-server on a free port in a temp folder: for tests that stop or pause Redis. */
export interface OwnRedis {
  url: string
  port: number
  pause(): void
  resume(): void
  /** Kills the server; `start()` brings it back on the same port. */
  stop(): Promise<void>
  start(): Promise<void>
  /** Kills the server and removes its folder. */
  dispose(): Promise<void>
}

export async function startOwnRedis(): Promise<OwnRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'ei-redis-'))
  const port = await freePort()
  let child: ChildProcess | undefined

  async function start() {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        await requireRedis(`redis://127.0.0.1:${port}`)
        return
      } catch (error) {
        if (Date.now() > deadline) throw error
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  }

  async function stop() {
    const running = child
    // A killed server has a signalCode and no exitCode.
    if (!running || running.exitCode !== null || running.signalCode !== null) return
    running.kill('SIGCONT')
    const exited = new Promise((r) => running.once('exit', r))
    running.kill('SIGKILL')
    await exited
  }

  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    start,
    stop,
    async dispose() {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
