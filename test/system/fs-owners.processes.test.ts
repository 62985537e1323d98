/**
 * On the fs driver, a claim whose process has ended is taken over at once: its batch can never be
 * written any more (every write is a system call of that process), so a retry to another
 * instance is answered straight away instead of 503 `in_progress` until the claim is stale
 * (4 x storageTimeoutMs). A claim whose process is alive, even stuck, is still waited for.
 *
 * Child processes are event-ingest instances (h3 on loopback) on one fs directory; a core in this
 * process reads what they stored.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createEventIngest } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { storedCounts } from '../helpers/stored'
import { startTs } from '../helpers/process'

const childScript = fileURLToPath(new URL('../helpers/fs-owner-process.ts', import.meta.url))
/** The surviving instance's storage timeout: its claims would be stale after four of them (40 s). */
const SURVIVOR_TIMEOUT_MS = 10_000

type Child = ReturnType<typeof startTs> & { url: string }
const live = new Set<Child>()
let dir: string

async function startChild(name: string, timeoutMs: number, stall = false): Promise<Child> {
  const child = startTs(childScript, [dir, name, String(timeoutMs), ...(stall ? ['stall'] : [])])
  const started = Object.assign(child, { url: '' })
  live.add(started)
  void child.closed.then(() => live.delete(started))
  const line = await child.waitForLine((l) => l.startsWith('READY '))
  started.url = line.slice('READY '.length)
  return started
}

async function kill(child: Child): Promise<void> {
  child.proc.kill('SIGKILL')
  await child.closed
}

interface Answer {
  status: number
  body: any
  elapsed: number
}

/** One POST; status 0 when no answer came (the connection died with the instance). */
async function post(url: string, events: unknown[]): Promise<Answer> {
  const started = performance.now()
  try {
    const response = await fetch(`${url}/events/ingest`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(events),
      signal: AbortSignal.timeout(30_000),
    })
    const text = await response.text()
    return { status: response.status, body: text ? JSON.parse(text) : undefined, elapsed: performance.now() - started }
  } catch (error) {
    return { status: 0, body: { error: String(error) }, elapsed: performance.now() - started }
  }
}

/** How many times each id is listed in the log of `dir`. */
async function listed(): Promise<Map<string, number>> {
  const reader = createEventIngest({ env: {}, storage: `fs:${dir}`, instanceId: 'reader' })
  await reader.ready()
  try {
    return await storedCounts(reader)
  } finally {
    await reader.close()
  }
}

/** The process identities under `dir` (files named `<instance>-<log token>`). */
async function identities(): Promise<string[]> {
  return (await readdir(join(dir, 'events', 'p')).catch(() => [])).filter((name) => !name.startsWith('.'))
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'event-ingest-owners-'))
})

afterEach(async () => {
  await Promise.all([...live].map((child) => kill(child)))
  await rm(dir, { recursive: true, force: true })
})

afterAll(async () => {
  await Promise.all([...live].map((child) => kill(child)))
})

describe('fs: claims of an ended process', () => {
  it('are waited for while the process lives (stuck on its disk), and taken over at once after kill -9', { timeout: 60_000 }, async () => {
    const stuck = await startChild('stuck', 1000, true)
    const survivor = await startChild('survivor', SURVIVOR_TIMEOUT_MS)
    const batch = [makeEvent({ id: 'owners-1' }), makeEvent({ id: 'owners-2' }), makeEvent({ id: 'owners-3' })]

    // Its record write hangs: the request answers 503 once its storage timeout is over, and its
    // claims stay (the write may still land).
    const first = await post(stuck.url, batch)
    expect(first.status).toBe(503)
    expect(first.body.code).toBe('storage_unavailable')

    // Alive: its claims are young and may still be written, so the retry waits.
    for (let i = 0; i < 2; i++) {
      const waiting = await post(survivor.url, batch)
      expect(waiting.status, JSON.stringify(waiting.body)).toBe(503)
      expect(waiting.body.code).toBe('in_progress')
    }

    await kill(stuck)
    // Ended: nothing of it can land any more. Answered at once, far before the claims are stale.
    const retry = await post(survivor.url, batch)
    expect(retry.status, JSON.stringify(retry.body)).toBe(200)
    expect(retry.body).toEqual({ accepted: 3, duplicates: 0, rejected: [] })
    expect(retry.elapsed).toBeLessThan(SURVIVOR_TIMEOUT_MS)
    const again = await post(survivor.url, batch)
    expect(again.body).toEqual({ accepted: 0, duplicates: 3, rejected: [] })

    const counts = await listed()
    expect(batch.map((event) => counts.get(event.id))).toEqual([1, 1, 1])

    // A prune removes the identities of ended processes announced a dedupe window ago (1 ms
    // here), and keeps those of live ones.
    expect(await identities()).toHaveLength(2)
    const pruner = createEventIngest({ env: {}, storage: `fs:${dir}`, instanceId: 'pruner', dedupeWindowMs: 1 })
    await pruner.ready()
    await sleep(5)
    await pruner.prune({ olderThan: 0 })
    await pruner.close()
    const left = await identities()
    expect(left).toHaveLength(1)
    expect(left[0]).toMatch(/^survivor-/)
  })

  it('after kill -9 mid-load, every retry to another instance is answered at once and each id is stored once', { timeout: 90_000 }, async () => {
    const victim = await startChild('victim', 5000)
    const survivor = await startChild('other', SURVIVOR_TIMEOUT_MS)
    const answered: { ids: string[]; answer: Answer }[] = []
    const unanswered: unknown[][] = []
    let stop = false
    let n = 0
    const loops = Array.from({ length: 16 }, async (_, loop) => {
      while (!stop) {
        const events = Array.from({ length: 10 }, (_, i) => makeEvent({ id: `load-${loop}-${n}-${i}` }))
        n++
        const answer = await post(victim.url, events)
        if (answer.status === 0) {
          unanswered.push(events)
          return
        }
        expect(answer.status, JSON.stringify(answer.body)).toBe(200)
        answered.push({ ids: events.map((e) => e.id), answer })
      }
    })
    await sleep(800)
    await kill(victim)
    stop = true
    await Promise.all(loops)
    expect(answered.length, 'the victim answered batches before it died').toBeGreaterThan(0)
    expect(unanswered.length, 'batches were in flight when it died').toBeGreaterThan(0)

    const retries = await Promise.all(unanswered.map((events) => post(survivor.url, events)))
    for (const retry of retries) {
      expect(retry.status, JSON.stringify(retry.body)).toBe(200)
      expect(retry.body.accepted + retry.body.duplicates).toBe(10)
      expect(retry.elapsed).toBeLessThan(SURVIVOR_TIMEOUT_MS)
    }

    const counts = await listed()
    const acknowledged = [...answered.flatMap((a) => a.ids), ...unanswered.flatMap((events) => events.map((e: any) => e.id as string))]
    for (const id of acknowledged) expect(counts.get(id), id).toBe(1)
    expect([...counts.values()].every((c) => c === 1)).toBe(true)
  })
})
