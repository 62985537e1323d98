import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'

export const projectRoot = fileURLToPath(new URL('../..', import.meta.url))

/** A port free right now on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** Runs a TypeScript helper in a child node process through tsx, collecting its complete stdout lines. */
export function startTs(script: string, args: string[] = []) {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: projectRoot, stdio: 'pipe' })
  const lines: string[] = []
  const listeners = new Set<() => void>()
  let partial = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n')
    partial = parts.pop()!
    lines.push(...parts)
    for (const listener of listeners) listener()
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()))
  const waitForLine = (test: (line: string) => boolean) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = lines.find(test)
        if (line === undefined) return false
        listeners.delete(check)
        resolve(line)
        return true
      }
      listeners.add(check)
      check()
      void closed.then(() => check() || reject(new Error(`${script} exited without the expected line:\n${stderr}`)))
    })
  return { proc: child, lines, closed, waitForLine, stderr: () => stderr }
}

/**
 * For a child process serving a test: closes `host` (flushing its stats) and exits on SIGTERM,
 * SIGINT, or when stdin closes, so it never outlives a test run that dies without killing it.
 * Exits with 1 if closing takes over 5 s.
 */
export function closeOnExit(host: { close(): Promise<void> }): void {
  let closing = false
  const shutdown = async () => {
    if (closing) return
    closing = true
    const force = setTimeout(() => process.exit(1), 5000)
    force.unref()
    await host.close().catch((error: unknown) => process.stderr.write(`close failed: ${String(error)}\n`))
    process.exit(0)
  }
  process.on('SIGTERM', shutdown)
  process.on('SIGINT', shutdown)
  process.stdin.on('end', shutdown)
  process.stdin.on('close', shutdown)
  process.stdin.resume()
}

/**
 * The URL a child process prints as `LISTENING <url>`, once it does (within `withinMs`); rejects,
 * with its stderr, when it exits first or takes longer. `stderr()` reads what it wrote so far.
 */
export function whenListening(proc: ChildProcessWithoutNullStreams, name: string, withinMs = 20_000): { url: Promise<string>; stderr: () => string } {
  let stdout = ''
  let stderr = ''
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const url = new Promise<string>((resolve, reject) => {
    let found = false
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${withinMs / 1000} s:\n${stderr}`)), withinMs)
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      const match = /^LISTENING (\S+)$/m.exec(stdout)
      if (match && !found) {
        found = true
        clearTimeout(timer)
        resolve(match[1]!)
      }
    })
    proc.once('exit', (code, signal) => {
      clearTimeout(timer)
      if (!found) reject(new Error(`${name} exited (${code ?? signal}) before listening:\n${stderr}`))
    })
  })
  return { url, stderr: () => stderr }
}
