/**
 * DESIGN: "the fs path must survive kill -9 mid-write without losing or corrupting an acknowledged
 * batch". A child process runs the real product (createEventIngest on `fs:<dir>`, h3 adapter, real
 * HTTP); this process sends batches from several concurrent senders and SIGKILLs the child at a
 * random moment while requests are in flight, 25 times on the same directory. A fresh instance then
 * reads the directory back.
 */
import { randomInt } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { rawRequest } from '../helpers/http'
import { startTs } from '../helpers/process'

const serverScript = fileURLToPath(new URL('../helpers/crash-ingest-server.ts', import.meta.url))

const RUNS = 25
const SENDERS = 6

type SentEvent = Record<string, any> & { id: string }

let dir: string
const live = new Set<ReturnType<typeof startTs>>()

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'event-ingest-crash-'))
})

afterAll(async () => {
  for (const child of live) child.proc.kill('SIGKILL')
  await Promise.all([...live].map((child) => child.closed))
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('fs storage: kill -9 of the product mid-ingest', () => {
  it(`never loses, duplicates or tears an acknowledged event across ${RUNS} SIGKILLs`, { timeout: 90_000 }, async () => {
    const sent = new Map<string, SentEvent>() // every event ever sent, by id (re-sends reuse the object)
    const acked = new Set<string>()
    const ackedList: string[] = [] // the same ids, for random picks
    const unacked = new Set<string>() // sent in a request that got no 200: retried later, like a client would
    const violations: string[] = []
    const totals = { requests: 0, ok: 0, inProgress: 0, cut: 0, inFlightAtKill: 0, runsKilledMidRequest: 0, resentAcked: 0, retriedUnacked: 0, duplicates: 0, retriedStored: 0 }
    const inFlightPerRun: number[] = []
    let sequence = 0

    const pick = <T>(from: readonly T[], count: number, taken: Set<T>): T[] => {
      const out: T[] = []
      for (let tries = 0; out.length < count && tries < count * 4; tries++) {
        const item = from[randomInt(from.length)]!
        if (!taken.has(item)) {
          taken.add(item)
          out.push(item)
        }
      }
      return out
    }

    /** A batch of 1–50 events: fresh ids, sometimes with already-acked ids and retries of unacked ones. */
    const makeBatch = (run: number) => {
      const size = randomInt(1, 51)
      const taken = new Set<string>()
      const roll = Math.random()
      let resent: string[] = []
      if (roll < 0.1 && ackedList.length > 0) resent = pick(ackedList, size, taken) // a pure re-send
      else if (roll < 0.4 && ackedList.length > 0) resent = pick(ackedList, randomInt(1, Math.min(10, size) + 1), taken)
      const retried = Math.random() < 0.25 && unacked.size > 0 ? pick([...unacked], Math.min(5, size - resent.length), taken) : []
      const fresh: SentEvent[] = []
      for (let i = resent.length + retried.length; i < size; i++) {
        const n = sequence++
        const id = `crash_${run}_${n.toString(36)}_${Math.random().toString(36).slice(2, 8)}`
        const event = makeEvent({
          id,
          payload: { productId: `prod_${n}`, run, n, tags: ['a', n % 7 === 0 ? 'ünï😀' : 'b'], note: 'x'.repeat(randomInt(0, 400)) },
        }) as SentEvent
        sent.set(id, event)
        fresh.push(event)
      }
      const events = [...fresh, ...resent.map((id) => sent.get(id)!), ...retried.map((id) => sent.get(id)!)]
      for (let i = events.length - 1; i > 0; i--) {
        const j = randomInt(i + 1)
        ;[events[i], events[j]] = [events[j]!, events[i]!]
      }
      return { events, fresh: fresh.length, resent: resent.length, retried: retried.length }
    }

    for (let run = 0; run < RUNS; run++) {
      const child = startTs(serverScript, [dir, `crash${run}`])
      live.add(child)
      const ready = await child.waitForLine((line) => line.startsWith('READY '))
      const url = ready.slice('READY '.length)
      let killed = false
      let inFlight = 0

      const sender = async () => {
        while (!killed) {
          const batch = makeBatch(run)
          totals.requests++
          totals.resentAcked += batch.resent
          totals.retriedUnacked += batch.retried
          inFlight++
          let response: Awaited<ReturnType<typeof rawRequest>> | undefined
          try {
            response = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(batch.events) })
          } catch (error) {
            if (!killed) violations.push(`run ${run}: request failed before the kill: ${(error as Error).message}`)
            else totals.cut++
          } finally {
            inFlight--
          }
          const ids = batch.events.map((event) => event.id)
          if (response?.status === 200) {
            totals.ok++
            const { accepted, duplicates, rejected } = response.json as { accepted: number; duplicates: number; rejected: unknown[] }
            if (rejected.length !== 0 || accepted + duplicates !== ids.length) {
              violations.push(`run ${run}: 200 with ${accepted} accepted + ${duplicates} duplicates, ${rejected.length} rejected, for ${ids.length} events`)
            }
            // Fresh ids were never stored: all accepted. Acked ids were: all duplicates. Retries may be either.
            if (accepted < batch.fresh || accepted > batch.fresh + batch.retried || duplicates < batch.resent) {
              violations.push(`run ${run}: ${accepted} accepted / ${duplicates} duplicates for ${batch.fresh} fresh, ${batch.resent} acked, ${batch.retried} retried`)
            }
            totals.duplicates += duplicates
            totals.retriedStored += accepted - batch.fresh
            for (const id of ids) {
              unacked.delete(id)
              if (!acked.has(id)) {
                acked.add(id)
                ackedList.push(id)
              }
            }
          } else {
            if (response?.status === 503 && response.json?.code === 'in_progress') totals.inProgress++
            else if (response) violations.push(`run ${run}: status ${response.status} ${response.text}`)
            for (const id of ids) if (!acked.has(id)) unacked.add(id)
          }
        }
      }

      const senders = Array.from({ length: SENDERS }, sender)
      await sleep(randomInt(30, 401))
      killed = true
      child.proc.kill('SIGKILL')
      inFlightPerRun.push(inFlight)
      totals.inFlightAtKill += inFlight
      if (inFlight > 0) totals.runsKilledMidRequest++
      await child.closed
      live.delete(child)
      await Promise.all(senders)
      expect(child.proc.signalCode, `run ${run} died of the kill, not on its own:\n${child.stderr()}`).toBe('SIGKILL')
    }

    // Temp files are what a kill leaves of a write it interrupted: dedupe claims (events/d) and batch records (events/b).
    const tempFiles = (await readdir(dir, { recursive: true })).map(String).filter((file) => file.endsWith('.tmp'))
    const tempOf = (area: string) => tempFiles.filter((file) => file.startsWith(join('events', area) + sep)).length

    // A fresh instance reads everything back.
    const ingest = createEventIngest({ env: {}, storage: `fs:${dir}` })
    try {
      await ingest.ready()
      const log = ingest.log!

      const listed = new Map<string, number>()
      const listedEvents: Record<string, any>[] = []
      let pages = 0
      for (let cursor: string | undefined; ; ) {
        const page = await ingest.events({ limit: 1000, since: 0, ...(cursor ? { cursor } : {}) })
        pages++
        for (const event of page.events) {
          listed.set(event.id, (listed.get(event.id) ?? 0) + 1)
          listedEvents.push(event)
        }
        if (!page.nextCursor) break
        cursor = page.nextCursor
      }

      const missing: string[] = []
      const wrong: string[] = []
      for (const id of acked) {
        const stored = await log.get(id)
        if (!stored) missing.push(id)
        else if (!sameEvent(stored, sent.get(id)!)) wrong.push(id)
      }
      const storedTwice = [...listed].filter(([, count]) => count > 1).map(([id]) => id)
      const notListed = [...acked].filter((id) => !listed.has(id))
      const unknown = [...listed.keys()].filter((id) => !sent.has(id))
      const listedWrong = listedEvents.filter((event) => sent.has(event.id) && !sameEvent(event, sent.get(event.id)!)).map((event) => event.id)
      const storedUnacked = [...listed.keys()].filter((id) => !acked.has(id)).length

      console.info(
        `[crash.fs] ${RUNS} runs, ${totals.requests} requests (${totals.ok} × 200, ${totals.inProgress} × 503 in_progress, ${totals.cut} cut by the kill), ` +
          `${acked.size} acked ids (${totals.resentAcked} acked ids re-sent, ${totals.duplicates} duplicates answered, ` +
          `${totals.retriedUnacked} unacked ids retried of which ${totals.retriedStored} stored by the retry), ` +
          `in flight at kill: ${totals.inFlightAtKill} in total, ${totals.runsKilledMidRequest}/${RUNS} runs mid-request [${inFlightPerRun.join(' ')}], ` +
          `${listed.size} ids listed in ${pages} pages (${storedUnacked} stored but never acked), ` +
          `${tempFiles.length} temp files left (${tempOf('d')} claims, ${tempOf('b')} batch records), corruptRecords ${log.corruptRecords}`,
      )

      // Soft: a failure reports every broken property at once.
      expect.soft(violations, 'HTTP answers').toEqual([])
      expect.soft(acked.size, 'the senders got batches acknowledged').toBeGreaterThan(RUNS)
      expect.soft(totals.runsKilledMidRequest, 'kills landed while requests were in flight').toBeGreaterThanOrEqual(RUNS - 2)
      expect.soft(totals.cut, 'some requests were cut by a kill').toBeGreaterThan(0)
      expect.soft(missing, 'acked ids that log.get cannot find').toEqual([])
      expect.soft(wrong, 'acked ids read back different from what was sent').toEqual([])
      expect.soft(storedTwice, 'ids stored more than once').toEqual([])
      expect.soft(notListed, 'acked ids missing from the listing').toEqual([])
      expect.soft(unknown, 'listed ids never sent').toEqual([])
      expect.soft(listedWrong, 'listed events different from what was sent').toEqual([])
      expect.soft(log.corruptRecords, 'torn batch records met while reading').toBe(0)
    } finally {
      await ingest.close()
    }
  })
})

/** The stored event is the sent envelope plus `receivedAt`. */
function sameEvent(stored: Record<string, any>, sentEvent: SentEvent): boolean {
  const { receivedAt, ...rest } = stored
  return typeof receivedAt === 'string' && isDeepStrictEqual(rest, sentEvent)
}

