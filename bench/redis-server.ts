import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import Redis from 'ioredis'

/** A redis-server the bench started for itself: nothing else talks to it, so its counters are the bench's alone. */
export interface OwnRedis {
  url: string
  stop(): Promise<void>
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** Starts `redis-server` on a free loopback port with no persistence, and waits until it answers. */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const failed = new Promise<never>((_, reject) => child.once('error', (error) => reject(new Error(`redis-server could not start: ${error.message}`))))
  const url = `redis://127.0.0.1:${port}`
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  try {
    for (let i = 0; ; i++) {
      try {
        await Promise.race([client.connect().then(() => client.ping()), failed])
        break
      } catch (error) {
        if (i >= 50 || child.exitCode !== null) throw error
        client.disconnect()
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  } catch (error) {
    child.kill('SIGTERM')
    throw error
  } finally {
    client.disconnect()
  }
  return {
    url,
    async stop() {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))])
      if (child.exitCode === null) child.kill('SIGKILL')
    },
  }
}
