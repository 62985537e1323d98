import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest, type EventIngest } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { projectRoot, whenListening } from '../helpers/process'
import { storedCounts, until } from '../helpers/stored'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'

/**
 * Two separate Node processes, each an event-ingest instance behind a real HTTP server, sharing
 * one Redis prefix on the shared Redis (REDIS_URL). Proves DESIGN §4 across instances: the same id
 * is stored once whichever instance gets it (atomic claims in Redis, not in-process locks),
 * duplicates are reported, every request is answered at once (never 503 `in_progress`), and
 * stats from either instance sum both. A third core in this process reads the shared prefix.
 */

const childScript = fileURLToPath(new URL('../helpers/redis-ingest-process.ts', import.meta.url))
const prefix = uniquePrefix('multi')
const ADMIN = 'multi-admin-token'
const ROUNDS = 5

interface Child {
  name: string
  proc: ChildProcessWithoutNullStreams
  url: string
  stderr: () => string
}

const children: Child[] = []
let observer: EventIngest<any> | undefined

async function startChild(name: string, instanceId: string): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', childScript, redisUrl, prefix, instanceId, ADMIN], { cwd: projectRoot, stdio: 'pipe' })
  const listening = whenListening(proc, name)
  // Registered before anything can fail, so afterAll kills it whatever happens next.
  const child: Child = { name, proc, url: '', stderr: listening.stderr }
  children.push(child)
  child.url = await listening.url
  return child
}

async function stopChild(child: Child): Promise<void> {
  const { proc } = child
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  proc.kill('SIGTERM')
  const timeout = sleep(5000).then(() => 'timeout' as const)
  if ((await Promise.race([exited, timeout])) === 'timeout') {
    proc.kill('SIGKILL')
    await exited
  }
}

interface Answer {
  status: number
  body: any
  retryAfter: string | null
}

async function post(url: string, events: unknown[]): Promise<Answer> {
  const response = await fetch(`${url}/events/ingest`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(events),
    signal: AbortSignal.timeout(10_000),
  })
  const text = await response.text()
  return { status: response.status, body: text ? JSON.parse(text) : undefined, retryAfter: response.headers.get('retry-after') }
}

/** What every 200 answered, summed: the stats of both instances must add up to this. */
const answered = { accepted: 0, duplicates: 0 }

/**
 * Posts a batch, answered 200 at once: Redis is healthy and stores a batch in one step (claims and
 * record in one script), so no request waits on another's claims and none is told `in_progress`.
 */
async function postUntilOk(url: string, events: unknown[]) {
  const answer = await post(url, events)
  expect(answer.status, JSON.stringify(answer.body)).toBe(200)
  expect(answer.body.rejected).toEqual([])
  answered.accepted += answer.body.accepted
  answered.duplicates += answer.body.duplicates
  return { final: answer.body as { accepted: number; duplicates: number } }
}

async function stats(child: Child) {
  const response = await fetch(`${child.url}/admin/events/stats`, { headers: { authorization: `Bearer ${ADMIN}` } })
  expect(response.status).toBe(200)
  return (await response.json()) as { instances: number; totals: { accepted: number; duplicates: number }; byName: Record<string, number> }
}



describe('two processes sharing one Redis prefix', () => {
  let a: Child
  let b: Child

  beforeAll(async () => {
    await requireRedis()
    ;[a, b] = await Promise.all([startChild('A', 'multi_a'), startChild('B', 'multi_b')])
    // A third core in this process on the same prefix, to read what the children stored. It never
    // ingests, so it never registers in the stats and is not counted as an instance.
    observer = createEventIngest({ env: {}, storage: { driver: 'redis', url: redisUrl, base: prefix }, instanceId: 'multi_observer' })
    await observer.ready()

    // One event each, one instance after the other, each waited for in the shared instance
    // registry, so that every test below starts with both instances registered.
    await postUntilOk(a.url, [makeEvent()])
    await until('A registered', () => observer!.stats(), (s) => s.instances === 2)
    await postUntilOk(b.url, [makeEvent()])
    await until('B registered', () => observer!.stats(), (s) => s.instances === 3)
  })

  afterAll(async () => {
    await Promise.all(children.map(stopChild))
    await observer?.close()
    await deletePrefix(prefix)
  })

  it('the same batch sent to both processes at once is stored once; the other reports duplicates', async () => {
    // Several rounds, each a fresh batch, so a race between the two processes gets several chances.
    for (let round = 0; round < ROUNDS; round++) {
      const events = Array.from({ length: 10 }, (_, i) => makeEvent({ id: `both-${prefix}-${round}-${i}`, payload: { productId: `p${i}` } }))
      const [fromA, fromB] = await Promise.all([postUntilOk(a.url, events), postUntilOk(b.url, events)])
      // Each id is accepted by exactly one of the two and reported as a duplicate by the other.
      expect(fromA.final.accepted + fromB.final.accepted, `round ${round}`).toBe(10)
      expect(fromA.final.duplicates + fromB.final.duplicates, `round ${round}`).toBe(10)
      expect(fromA.final.accepted + fromA.final.duplicates).toBe(10)
      expect(fromB.final.accepted + fromB.final.duplicates).toBe(10)

      const counts = await storedCounts(observer!)
      for (const event of events) {
        expect(counts.get(event.id), event.id).toBe(1)
        expect(await observer!.log!.get(event.id)).toMatchObject({ id: event.id, payload: event.payload })
      }

      if (round === 0) {
        // Sent again to both, one after the other: nothing new is stored anywhere.
        expect((await postUntilOk(a.url, events)).final).toMatchObject({ accepted: 0, duplicates: 10 })
        expect((await postUntilOk(b.url, events)).final).toMatchObject({ accepted: 0, duplicates: 10 })
        expect((await storedCounts(observer!)).get(events[0]!.id)).toBe(1)
      }
    }
  })

  it('20 concurrent requests carrying one id, split across both processes: one copy, 19 duplicates', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const event = makeEvent({ id: `one-${prefix}-${round}`, name: 'OrderCreated', source: 'api', payload: { orderId: `o-${round}`, total: 12.5, currency: 'EUR' } })
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => postUntilOk(i % 2 === 0 ? a.url : b.url, [event])))
      const finals = results.map((r) => r.final)
      expect(finals.filter((f) => f.accepted === 1 && f.duplicates === 0), `round ${round}`).toHaveLength(1)
      expect(finals.filter((f) => f.accepted === 0 && f.duplicates === 1), `round ${round}`).toHaveLength(19)

      expect((await storedCounts(observer!)).get(event.id)).toBe(1)
      expect(await observer!.log!.get(event.id)).toMatchObject({ id: event.id, payload: event.payload })
    }
  })

  it('stats from either process include both instances, and add up to what was answered', async () => {
    const expected = { ...answered }
    // Two warm-up events, ROUNDS batches of 10 and ROUNDS single ids: each stored exactly once.
    expect(expected.accepted).toBe(2 + ROUNDS * 10 + ROUNDS)
    const check = (s: Awaited<ReturnType<typeof stats>>) =>
      s.instances === 2 && s.totals.accepted === expected.accepted && s.totals.duplicates === expected.duplicates
    const fromA = await until('stats of A', () => stats(a), check)
    const fromB = await until('stats of B', () => stats(b), check)
    expect(fromA.totals).toMatchObject(expected)
    expect(fromB.totals).toMatchObject(expected)
    expect(fromA.byName).toEqual(fromB.byName)
    expect(fromA.byName.OrderCreated).toBe(ROUNDS)
  })
})
