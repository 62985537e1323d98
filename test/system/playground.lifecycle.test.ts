import { execFile, spawn } from 'node:child_process'
import { request } from 'node:http'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { makeEvent } from '../helpers/fixtures'
import { startPlayground } from '../helpers/playground-process'
import { freePort, projectRoot } from '../helpers/process'

/** A POST whose body is sent in two parts: the second only when `finish()` is called. */
function slowPost(url: string, body: string) {
  const half = Math.floor(body.length / 2)
  const req = request(`${url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } })
  const response = new Promise<{ status: number; body: any }>((resolve, reject) => {
    req.on('response', (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  req.write(body.slice(0, half))
  return { response, finish: () => req.end(body.slice(half)) }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('the playground stops gracefully', () => {
  it('answers every request in flight on SIGTERM, then exits', async () => {
    const playground = await startPlayground()
    const requests = Array.from({ length: 8 }, () => slowPost(playground.url, JSON.stringify([makeEvent(), makeEvent()])))
    // Every request has reached the server and is reading its body.
    await sleep(500)
    const stopped = playground.stop()
    await sleep(300)
    for (const slow of requests) slow.finish()
    const answers = await Promise.allSettled(requests.map((slow) => slow.response))
    await stopped
    expect(answers.map((answer) => (answer.status === 'fulfilled' ? answer.value : String(answer.reason)))).toEqual(
      Array.from({ length: 8 }, () => ({ status: 200, body: { accepted: 2, duplicates: 0, rejected: [] } })),
    )
    expect(playground.output()).toContain('[playground] SIGTERM: finishing requests in flight (up to 10000 ms), then stopping')
  })

  it('cuts a request still unfinished after SHUTDOWN_GRACE_MS, and exits', async () => {
    const playground = await startPlayground({ SHUTDOWN_GRACE_MS: '300' })
    const stuck = slowPost(playground.url, JSON.stringify([makeEvent()]))
    await sleep(300)
    const started = Date.now()
    await playground.stop()
    // stop() would SIGKILL after 5 s: the playground exited by itself well before.
    expect(Date.now() - started).toBeLessThan(4000)
    await expect(stuck.response).rejects.toThrow()
  })
})

describe('the playground start-up banner', () => {
  it('prints a curl for ingest that works as pasted', async () => {
    const playground = await startPlayground()
    try {
      const line = playground.output().split('\n').find((l) => l.trim().startsWith(`curl -s ${playground.url}/events/ingest`))
      expect(line, playground.output()).toBeDefined()
      const { stdout } = await promisify(execFile)('sh', ['-c', line!.trim()])
      expect(JSON.parse(stdout)).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      const again = await promisify(execFile)('sh', ['-c', line!.trim()])
      expect(JSON.parse(again.stdout)).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
      // The README's quick-start curl, pointed at this playground, answers what the README says.
      const readme = await readFile(join(projectRoot, 'README.md'), 'utf8')
      const quickStart = /^curl -s http:\/\/127\.0\.0\.1:3000\/events\/ingest .*$/m.exec(readme)![0]
      const documented = /^# (\{.*?\}); sent again: (\{.*\})$/m.exec(readme)!
      const first = await promisify(execFile)('sh', ['-c', quickStart.replace('http://127.0.0.1:3000', playground.url)])
      expect(first.stdout).toBe(documented[1])
      const second = await promisify(execFile)('sh', ['-c', quickStart.replace('http://127.0.0.1:3000', playground.url)])
      expect(second.stdout).toBe(documented[2])
    } finally {
      await playground.stop()
    }
  })
})

describe('the playground refuses bad settings in one line', () => {
  let dir: string
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  /** Runs the playground's entry directly (no npm around it) and returns its exit code and output. */
  async function run(env: Record<string, string>) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'playground/server.ts'], {
      cwd: projectRoot,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', PORT: String(await freePort()), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    return { code, output: output.trim() }
  }

  it.each([
    ['EVENT_STORAGE', { EVENT_STORAGE: 'mysql://db' }, '[playground] EVENT_STORAGE: storage "mysql://db" is not one of memory:, fs:<dir>, redis://host:port/db, postgres://user@host:port/db'],
    ['EVENT_INGEST_TOKEN', { EVENT_INGEST_TOKEN: ',,' }, '[playground] EVENT_INGEST_TOKEN is set but holds no token; unset it to leave the route open'],
    ['EVENT_SINK_URL', { EVENT_SINK_URL: 'localhost:3000/sink' }, '[playground] sink url must be an http(s) URL like https://sink.example/events, got "localhost:3000/sink"'],
    ['SHUTDOWN_GRACE_MS', { SHUTDOWN_GRACE_MS: 'soon' }, '[playground] SHUTDOWN_GRACE_MS must be a whole number of ms, got "soon"'],
  ])('%s', async (_name, env, line) => {
    const { code, output } = await run(env)
    expect(code).toBe(1)
    expect(output).toBe(line)
  })

  it('an fs directory that cannot be used', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ei-playground-'))
    await writeFile(join(dir, 'file'), '')
    const { code, output } = await run({ EVENT_STORAGE: `fs:${dir}/file/events` })
    expect(code).toBe(1)
    expect(output.split('\n')).toEqual([
      `[playground] storage "fs:${dir}/file/events" failed: fs storage directory "${dir}/file/events" cannot be used: a file is in the way of the directory (ENOTDIR)`,
    ])
  })

  it('an unreachable Redis is said in one line naming it; the playground still starts', async () => {
    const port = await freePort()
    const playground = await startPlayground({ EVENT_STORAGE: `redis://127.0.0.1:${port}/0` })
    try {
      const output = playground.output()
      const line = `[event-ingest] redis storage at 127.0.0.1:${port} is unreachable (ECONNREFUSED); retrying in the background`
      expect(output.split('\n').filter((l) => l.startsWith('[event-ingest]'))).toEqual([line])
      // Said before the banner: ready() made the first connection attempt.
      expect(output.indexOf(line)).toBeLessThan(output.indexOf('listening on'))
      const response = await fetch(`${playground.url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([makeEvent()]) })
      expect(response.status).toBe(503)
      expect((await response.json()).code).toBe('storage_unavailable')
      expect(playground.output()).not.toMatch(/max retries per request/)
    } finally {
      await playground.stop()
    }
  })
})
