import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Counters, CpuSample, MemorySample, ServerCommand, ServerConfig, ServerMessage } from './protocol'
import { targets } from './targets'

const root = fileURLToPath(new URL('..', import.meta.url))
const serverEntry = fileURLToPath(new URL('./server.ts', import.meta.url))

type Command = ServerCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never

/** The runner's handle on one server process. */
export interface ServerProcess {
  readonly pid: number
  readonly url: string
  cpu(): Promise<CpuSample>
  memory(options: { gc: boolean; dataBytes?: boolean }): Promise<MemorySample>
  counters(): Promise<Counters>
  load(total: number, batchSize: number): Promise<{ stored: number; ms: number }>
  /** Asks the server to close and waits for the process to exit (killed after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<void>
}

/** Options of {@link startServerProcess}. */
export interface StartOptions {
  /** Extra node flags, like `--expose-gc` or `--cpu-prof`. */
  nodeArgs?: string[]
  /** @default 30_000 */
  startTimeoutMs?: number
}

/** Starts `bench/server.ts` for `config` in a new node process and resolves once it listens. */
export function startServerProcess(config: ServerConfig, options: StartOptions = {}): Promise<ServerProcess> {
  const child: ChildProcess = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', serverEntry, JSON.stringify(config)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, NODE_ENV: 'production', ...targets.find((t) => t.id === config.target)?.env },
  })
  let output = ''
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>()
  let nextId = 1

  exited.then((code) => {
    for (const { reject } of pending.values()) reject(new Error(`bench server ${config.target} exited (${code}) during a command:\n${output}`))
    pending.clear()
  })

  const request = <T>(command: Command): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (child.exitCode !== null || !child.connected) {
        reject(new Error(`bench server ${config.target} is not running:\n${output}`))
        return
      }
      const id = nextId++
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject })
      child.send({ ...command, id })
    })

  return new Promise<ServerProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`bench server ${config.target} did not start within ${options.startTimeoutMs ?? 30_000} ms:\n${output}`))
    }, options.startTimeoutMs ?? 30_000)
    exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`bench server ${config.target} exited (${code}) before listening:\n${output}`))
    })
    child.on('message', (message: ServerMessage) => {
      if (message.type === 'ready') {
        clearTimeout(timer)
        resolve({
          pid: child.pid!,
          url: `http://127.0.0.1:${message.port}`,
          cpu: () => request({ cmd: 'cpu' }),
          memory: ({ gc, dataBytes = false }) => request({ cmd: 'mem', gc, dataBytes }),
          counters: () => request({ cmd: 'counters' }),
          load: (total, batchSize) => request({ cmd: 'load', total, batchSize }),
          async stop(timeoutMs = 15_000) {
            if (child.exitCode !== null) return
            const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
            await request({ cmd: 'close' }).catch(() => {})
            await exited
            clearTimeout(killer)
          },
        })
        return
      }
      const waiting = pending.get(message.id)
      if (!waiting) return
      pending.delete(message.id)
      if (message.ok) waiting.resolve(message.value)
      else waiting.reject(new Error(`bench server ${config.target}: ${message.error}`))
    })
  })
}
