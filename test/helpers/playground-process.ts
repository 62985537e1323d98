import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { freePort } from './process'

const root = fileURLToPath(new URL('../../', import.meta.url))

/** A playground started as a user would: `npm run playground`, in its own process group. */
export interface RunningPlayground {
  /** The URL it printed, like `http://127.0.0.1:41234`. */
  url: string
  /** The dev admin token it printed, when it generated one. */
  devAdminToken: string | undefined
  /** Everything it printed so far (stdout and stderr). */
  output(): string
  /** Stops the whole process group (npm, tsx and node) and waits for it. */
  stop(): Promise<void>
}


/**
 * Runs `npm run playground` with a minimal environment (PATH, HOME, a free PORT, plus `env`) and
 * resolves once it prints the URL it listens on. `env` may be a function of that URL (to point
 * EVENT_SINK_URL at the playground's own sink, say).
 */
export async function startPlayground(env: Record<string, string> | ((url: string) => Record<string, string>) = {}, timeoutMs = 20_000): Promise<RunningPlayground> {
  const port = await freePort()
  const extra = typeof env === 'function' ? env(`http://127.0.0.1:${port}`) : env
  const child = spawn('npm', ['run', 'playground'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', PORT: String(port), ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    killGroup(child, 'SIGTERM')
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }

  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the playground printed no URL within ${timeoutMs} ms:\n${output}`)), timeoutMs)
      const check = () => {
        const found = /listening on (http:\/\/\S+)/.exec(output)
        if (found) {
          clearTimeout(timer)
          resolve(found[1]!)
        }
      }
      child.stdout!.on('data', check)
      void exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`the playground exited with code ${code} before printing its URL:\n${output}`))
      })
    })
    // The banner is printed in one write, but wait for its end so the token is complete.
    await waitFor(() => /\ntry\n/.test(output), 5000)
    return { url, devAdminToken: /admin token\s+(dev-\S+)/.exec(output)?.[1], output: () => output, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal)
  } catch {
    // Already gone.
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > until) throw new Error('timed out waiting for the playground banner')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
