/**
 * The killed-instance suite every backend that stores a batch in one step runs: an instance
 * killed (kill -9) with many batches in flight, every batch without an answer retried to another
 * instance and answered at once, 200 (accepted, or duplicates for what had landed), never 503
 * `in_progress`; each id stored exactly once; and the same batch sent to three instances at once
 * stored once. The instances are child processes behind real HTTP servers; a core in this process
 * (the observer) reads what they stored.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { EventIngest } from '../../src/index'
import { makeEvent } from './fixtures'
import { storedCounts } from './stored'
import { startTs } from './process'

/** One backend's part of the suite. */
export interface KilledInstanceBackend {
  label: string
  /** The child process: an instance on the backend; given these arguments, then its id, the admin token and a stats flush interval. */
  childScript: string
  childArgs: string[]
  /** Checks the server is reachable (failing, never skipping) and opens the observer. */
  open(): Promise<EventIngest<any>>
  /** Removes what the suite stored (its prefix, schema...). */
  cleanup(): Promise<void>
  /** What the backend promises beyond each id stored once, checked after the kill. */
  checkStored(observer: EventIngest<any>, counts: Map<string, number>): Promise<void>
}

const ADMIN = 'crash-admin-token'
/** Posting loops against the instance that is killed: the batches in flight when it dies. */
const LOOPS = 24
export const BATCH = 20

type Child = ReturnType<typeof startTs> & { url: string }
const live: Child[] = []
let observer: EventIngest<any> | undefined

async function startChild(backend: KilledInstanceBackend, instanceId: string, statsFlushMs?: number): Promise<Child> {
  const child = startTs(backend.childScript, [...backend.childArgs, instanceId, ADMIN, ...(statsFlushMs ? [String(statsFlushMs)] : [])])
  const started = Object.assign(child, { url: '' })
  live.push(started)
  const line = await child.waitForLine((l) => l.startsWith('LISTENING '))
  started.url = line.slice('LISTENING '.length)
  return started
}

interface Answer {
  status: number
  body: any
}

/** One POST; status 0 when no answer came (the connection died with the instance). */
async function post(url: string, events: unknown[]): Promise<Answer> {
  try {
    const response = await fetch(`${url}/events/ingest`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(events),
      signal: AbortSignal.timeout(15_000),
    })
    const text = await response.text()
    return { status: response.status, body: text ? JSON.parse(text) : undefined }
  } catch (error) {
    return { status: 0, body: { error: String(error) } }
  }
}

let counter = 0
function batch(label: string): Record<string, any>[] {
  counter++
  return Array.from({ length: BATCH }, (_, i) => makeEvent({ id: `${label}-${counter}-${i}`, payload: { productId: `p${i}` } }))
}


function expectStoredOnce(counts: Map<string, number>, ids: string[]) {
  const wrong = ids.filter((id) => counts.get(id) !== 1).map((id) => `${id}: ${counts.get(id) ?? 0}`)
  expect(wrong, 'ids stored other than exactly once').toEqual([])
}

export function defineKilledInstanceSuite(backend: KilledInstanceBackend): void {
  beforeAll(async () => {
    observer = await backend.open()
  })

  afterAll(async () => {
    for (const child of live) child.proc.kill('SIGKILL')
    await Promise.all(live.map((child) => child.closed))
    await observer?.close()
    await backend.cleanup()
  })

  describe(`${backend.label}: an instance killed mid-load`, () => {
    it('every batch without an answer is stored once by its retry to another instance, answered at once', { timeout: 60_000 }, async () => {
      // The doomed instance never flushes its stats buckets before it dies.
      const [doomed, survivor] = await Promise.all([startChild(backend, 'crash_doomed', 600_000), startChild(backend, 'crash_survivor')])
      const sent: { events: Record<string, any>[]; answer?: Answer }[] = []
      let running = true
      const loops = Array.from({ length: LOOPS }, async (_, w) => {
        while (running) {
          const entry: (typeof sent)[number] = { events: batch(`load${w}`) }
          sent.push(entry)
          entry.answer = await post(doomed.url, entry.events)
          if (entry.answer.status === 0) return
        }
      })
      // Until the instance has stored a fair number of batches, with more in flight.
      while (sent.filter((s) => s.answer?.status === 200).length < 50) await sleep(20)
      doomed.proc.kill('SIGKILL')
      await doomed.closed
      running = false
      await Promise.all(loops)

      for (const s of sent.filter((s) => s.answer?.status !== 0)) {
        expect(s.answer, 'answered before the kill').toEqual({ status: 200, body: { accepted: BATCH, duplicates: 0, rejected: [] } })
      }
      const unanswered = sent.filter((s) => s.answer?.status === 0)
      expect(unanswered.length, 'batches in flight when the instance died').toBeGreaterThanOrEqual(LOOPS / 2)

      // Each retried once, all at once: one answer each, 200, never 503 in_progress.
      const retries = await Promise.all(unanswered.map((s) => post(survivor.url, s.events)))
      const landed: string[] = []
      for (const [i, retry] of retries.entries()) {
        expect(retry.status, JSON.stringify(retry.body)).toBe(200)
        expect(retry.body.rejected).toEqual([])
        // A batch is whole or absent: the retry accepts all of it, or finds all of it stored.
        expect([0, BATCH]).toContain(retry.body.accepted)
        expect(retry.body.accepted + retry.body.duplicates).toBe(BATCH)
        if (retry.body.duplicates === BATCH) landed.push(...unanswered[i]!.events.map((e) => e.id as string))
      }

      const counts = await storedCounts(observer!)
      expectStoredOnce(counts, sent.flatMap((s) => s.events.map((e) => e.id as string)))
      // A batch that landed before the kill is read back through the survivor, like any other.
      for (const id of landed.slice(0, 5)) expect((await observer!.log!.get(id))?.id).toBe(id)
      await backend.checkStored(observer!, counts)
    })

    it('the same batch retried to three instances at once is stored once: one acceptance, two answers of duplicates', { timeout: 60_000 }, async () => {
      const instances = await Promise.all(['crash_r1', 'crash_r2', 'crash_r3'].map((id) => startChild(backend, id)))
      const ids: string[] = []
      for (let round = 0; round < 10; round++) {
        const events = batch(`three${round}`)
        ids.push(...events.map((e) => e.id as string))
        const answers = await Promise.all(instances.map((child) => post(child.url, events)))
        for (const answer of answers) expect(answer.status, JSON.stringify(answer.body)).toBe(200)
        const bodies = answers.map((a) => a.body).sort((a, b) => b.accepted - a.accepted)
        expect(bodies, `round ${round}`).toEqual([
          { accepted: BATCH, duplicates: 0, rejected: [] },
          { accepted: 0, duplicates: BATCH, rejected: [] },
          { accepted: 0, duplicates: BATCH, rejected: [] },
        ])
      }
      expectStoredOnce(await storedCounts(observer!), ids)
    })
  })
}
