import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { makeEvent } from '../helpers/fixtures'
import { freePort } from '../helpers/redis'
import { waitFor } from '../helpers/sink'

const root = fileURLToPath(new URL('../..', import.meta.url))
const readme = readFileSync(`${root}README.md`, 'utf8')
const outDir = `${root}test/.artifacts/readme/`
mkdirSync(outDir, { recursive: true })

/** The README's runnable examples: each fenced block right after `<!-- example: name -->`. */
const examples = new Map([...readme.matchAll(/<!-- example: (\w+) -->\s*```ts\n([\s\S]*?)```/g)].map((m) => [m[1]!, m[2]!]))

const children: ChildProcess[] = []
afterAll(() => {
  for (const child of children) child.kill('SIGKILL')
})

function run(name: string, env: Record<string, string> = {}) {
  const file = `${outDir}${name}.ts`
  writeFileSync(file, examples.get(name)!)
  // tsx resolves `event-ingest` through tsconfig paths to this checkout's sources.
  const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let output = ''
  child.stdout!.on('data', (chunk) => (output += chunk))
  child.stderr!.on('data', (chunk) => (output += chunk))
  return { child, output: () => output }
}

describe('README examples run as written', () => {
  it('has an example for h3, Express, Koa, Fastify, the core and the client', () => {
    expect([...examples.keys()].sort()).toEqual(['client', 'core', 'express', 'fastify', 'h3', 'kafka', 'koa'])
  })

  it('client: delivers its event to the h3 example and prints the id, which the server then knows', async () => {
    const port = await freePort()
    const server = run('h3', { PORT: String(port) })
    const url = `http://127.0.0.1:${port}/api`
    await waitFor(async () => {
      if (server.child.exitCode !== null) throw new Error(`the example exited: ${server.output()}`)
      return fetch(`${url}/events/schema`).then((r) => r.ok, () => false)
    }, 20_000, 'the h3 example to listen')
    const { child, output } = run('client', { EVENT_INGEST_URL: url })
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(code, output()).toBe(0)
    const id = output().trim()
    expect(id).toMatch(/^[0-9a-f-]{36}$/)
    // Sent again by hand, the same id is a duplicate: the client's event was stored.
    const again = await fetch(`${url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([makeEvent({ id, name: 'OrderCreated', source: 'api' })]) })
    expect(await again.json()).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
    server.child.kill('SIGKILL')
  })

  for (const name of ['h3', 'express', 'koa', 'fastify']) {
    it(`${name}: serves the routes under /api`, async () => {
      const port = await freePort()
      const { child, output } = run(name, { PORT: String(port) })
      const url = `http://127.0.0.1:${port}/api`
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`the example exited: ${output()}`)
        return fetch(`${url}/events/schema`).then((r) => r.ok, () => false)
      }, 20_000, `the ${name} example to listen`)
      const response = await fetch(`${url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([makeEvent()]) })
      expect(response.status).toBe(200)
      expect(await response.json()).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      child.kill('SIGKILL')
    })
  }

  it('kafka: the deliver sink hands each batch to the producer, retried with the same key after a failure', async () => {
    // kafkajs is not a dependency: the example runs against a test double of the client
    // (test/helpers/fake-kafkajs), found next to the example; the sink and its retries are real.
    cpSync(`${root}test/helpers/fake-kafkajs`, `${outDir}node_modules/kafkajs`, { recursive: true })
    const log = `${outDir}kafka-sent.jsonl`
    rmSync(log, { force: true })
    const port = await freePort()
    const { child, output } = run('kafka', { PORT: String(port), FAKE_KAFKA_LOG: log, FAKE_KAFKA_FAIL_FIRST: '1' })
    const url = `http://127.0.0.1:${port}/api`
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`the example exited: ${output()}`)
      return fetch(`${url}/events/schema`).then((r) => r.ok, () => false)
    }, 20_000, 'the kafka example to listen')
    const events = [makeEvent({ id: 'kafka-1' }), makeEvent({ id: 'kafka-2' })]
    const response = await fetch(`${url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(events) })
    expect(await response.json()).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
    await waitFor(() => existsSync(log), 10_000, 'the producer to send')
    const [sent, ...more] = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line))
    expect(more).toEqual([])
    // The first call failed: this is the retry.
    expect(sent.call).toBe(2)
    expect(sent.topic).toBe('events')
    expect(sent.messages.map((m: { key: string }) => m.key)).toEqual(['kafka-1', 'kafka-2'])
    expect(JSON.parse(sent.messages[0].value)).toMatchObject({ id: 'kafka-1', name: 'ProductViewed' })
    expect(sent.messages[0].headers['idempotency-key']).toMatch(/^[0-9a-f]{32}$/)
    expect(sent.messages[1].headers['idempotency-key']).toBe(sent.messages[0].headers['idempotency-key'])
    child.kill('SIGKILL')
  })

  it('core: prints what the README says', async () => {
    const { child, output } = run('core')
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(code, output()).toBe(0)
    const [first, second] = output().trim().split('\n')
    expect(JSON.parse(first!)).toEqual({
      accepted: 1,
      duplicates: 0,
      rejected: [{ index: 1, id: 'evt_2', errors: [{ path: 'occurredAt', message: 'occurredAt: expected an ISO 8601 timestamp with Z or an offset (like 2026-01-31T12:00:00Z), got "yesterday"' }] }],
    })
    expect(second).toBe('2026-11-02T14:03:11.000Z')
  })
})

describe('README promises', () => {
  const section = (title: string) => readme.slice(readme.indexOf(`## ${title}`), readme.indexOf('\n## ', readme.indexOf(`## ${title}`) + 3))

  it('says the same, true thing about a 503 in the contract table and in Guarantees: not acknowledged, maybe partly stored, safe to retry', () => {
    const row = section('The HTTP contract').split('\n').find((line) => line.startsWith('| `POST /events/ingest`'))!
    const guarantees = section('Guarantees')
    // Events of a request answered 503 can be stored (a write landing late, a batch written whole
    // before a later step failed): "nothing was stored" would be false.
    expect(readme).not.toMatch(/nothing (of that request )?was stored/)
    expect(row).toMatch(/503 .*not(hing of that request was)? acknowledged.*may have been stored.*retry is safe.*duplicates/)
    expect(guarantees).toMatch(/A 503 means not acknowledged[^.]*may have been stored/)
    expect(guarantees).toMatch(/retry is safe: those events come back as\s+duplicates/)
  })

  it('states the counts a crash can lose, and that stored events are not lost with them', () => {
    const guarantees = section('Guarantees')
    expect(guarantees).toMatch(/Stats can lose the last seconds of counts on a crash; events cannot/)
    expect(guarantees).toMatch(/at most\s+`flushIntervalMs` of them/)
  })
})
