import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createEventIngest, parseBatchBytes, type EventIngest, type StorageOption } from '../../../src/index'
import { makeEvent } from '../../helpers/fixtures'

/** How a driver is set up for the suite: a storage option for a fresh log, and the same log again (a "restart"). */
export interface StorageSetup {
  name: string
  /** Storage for one log; called again with the same `key` must reach the same data. */
  storage(key: string): StorageOption | Promise<StorageOption>
  before?(): Promise<void>
  after?(): Promise<void>
  /**
   * The storage writes a batch's claims and record in one step (memory): a claim whose record is
   * gone is free to any log at once, with no claim protocol to wait out.
   */
  oneStep?: boolean
}

const HOUR = 3_600_000

/**
 * The EventLog contract every supported driver must keep, through the public core API. Each
 * storage driver's test file calls this.
 */
export function defineEventLogSuite(setup: StorageSetup) {
  describe(`EventLog on ${setup.name}`, () => {
    const open: EventIngest<any>[] = []
    const make = async (key: string, extra: Parameters<typeof createEventIngest>[0] = {}) => {
      const ingest = createEventIngest({ env: {}, storage: await setup.storage(key), ...extra })
      await ingest.ready()
      open.push(ingest)
      return ingest
    }
    beforeAll(async () => {
      await setup.before?.()
    })
    afterAll(async () => {
      await Promise.all(open.map((i) => i.close()))
      await setup.after?.()
    })

    it('stores a batch before resolving and reads every event back by id', async () => {
      const log = await make('basic')
      const events = [makeEvent({ id: 'b-1' }), makeEvent({ id: 'b-2', name: 'EmailSent', source: 'api' })]
      expect(await log.ingest(events)).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
      const stored = await log.log!.get('b-2')
      expect(stored).toMatchObject({ id: 'b-2', name: 'EmailSent', source: 'api', payload: events[1]!.payload })
      expect(stored!.receivedAt).toMatch(/Z$/)
      expect(await log.log!.get('missing')).toBeNull()
    })

    it('never lets two ids share a key (unstorage cuts at "?" and maps "/" to ":")', async () => {
      const log = await make('keys')
      const ids = ['a/b', 'a:b', 'a?b', 'a?c', 'a', 'A', 'a\\b', 'a b', '../etc', 'ü', 'u\u0308', 'x'.repeat(128), `${'x'.repeat(127)}y`, '💥', '.']
      const result = await log.ingest(ids.map((id, i) => makeEvent({ id, payload: { i } })))
      expect(result).toEqual({ accepted: ids.length, duplicates: 0, rejected: [] })
      for (const [i, id] of ids.entries()) {
        const stored = await log.log!.get(id)
        expect(stored?.payload, id).toEqual({ i })
      }
    })

    it('keeps ids with a lone surrogate apart from the ids their UTF-8 would turn them into', async () => {
      const log = await make('surrogates')
      // JSON allows "\ud800"; as UTF-8 it would become U+FFFD and meet the second id.
      const ids = ['s\ud800', 's\ufffd', '\udc00s', 'x'.repeat(90) + '\ud800', 'x'.repeat(90) + '\ufffd']
      const events = ids.map((id, i) => makeEvent({ id, payload: { i } }))
      expect(await log.ingest(events)).toEqual({ accepted: ids.length, duplicates: 0, rejected: [] })
      expect(await log.ingest(events)).toEqual({ accepted: 0, duplicates: ids.length, rejected: [] })
      for (const [i, id] of ids.entries()) expect((await log.log!.get(id))?.payload, JSON.stringify(id)).toEqual({ i })
    })

    it('reads back a batch whose body began with a byte order mark', async () => {
      const log = await make('bom')
      const events = [makeEvent({ id: 'bom-1' }), makeEvent({ id: 'bom-2' })]
      const parsed = parseBatchBytes(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(events))]), 32)
      expect(await log.ingest(parsed.value, { hints: parsed })).toMatchObject({ accepted: 2 })
      expect((await log.events()).events.map((e) => e.id).sort()).toEqual(['bom-1', 'bom-2'])
      expect(await log.log!.get('bom-2')).toMatchObject({ id: 'bom-2' })
      expect(log.log!.corruptRecords).toBe(0)
    })

    it('keeps what it received, not the caller\'s buffer, when the caller changes it afterwards', async () => {
      const log = await make('caller-bytes')
      const events = [makeEvent({ id: 'cb-1', payload: { n: 1 } }), makeEvent({ id: 'cb-2', payload: { n: 2 } })]
      // A buffer of its own (not a slice of Node's pool), as a host's reusable buffer would be.
      const body = new TextEncoder().encode(JSON.stringify(events))
      const before = Date.now()
      const response = await log.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json' }, body: { bytes: body } })
      const after = Date.now()
      expect(response?.status).toBe(200)
      // A host reusing its buffer for the next request must not change what was stored.
      body.fill(0x20)
      const stored = await log.log!.get('cb-2')
      expect(stored).toMatchObject({ id: 'cb-2', payload: { n: 2 } })
      const receivedAt = Date.parse(stored!.receivedAt)
      expect(receivedAt).toBeGreaterThanOrEqual(before)
      expect(receivedAt).toBeLessThanOrEqual(after)
      expect(log.log!.corruptRecords).toBe(0)
    })

    it('keeps what it received when the caller reuses the buffer it streamed', async () => {
      const log = await make('caller-stream')
      const events = [makeEvent({ id: 'cs-1', payload: { n: 1 } }), makeEvent({ id: 'cs-2', payload: { n: 2 } })]
      const buffer = new TextEncoder().encode(JSON.stringify(events))
      const response = await log.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json' }, body: { stream: (async function* () { yield buffer })() } })
      expect(response?.status).toBe(200)
      buffer.fill(0x20)
      expect((await log.log!.get('cs-2'))?.payload).toEqual({ n: 2 })
      expect((await log.events()).events).toHaveLength(2)
      expect(log.log!.corruptRecords).toBe(0)
    })

    it('reads back a streamed body with whitespace around the array, with its receive time', async () => {
      const log = await make('stream-bytes')
      const events = [makeEvent({ id: 'sb-1' }), makeEvent({ id: 'sb-2', payload: { note: 'ünïcode ✓' } })]
      const text = ` \r\n\t${JSON.stringify(events, null, 2)}\n `
      const bytes = Buffer.from(text)
      const chunks = [bytes.subarray(0, 7), bytes.subarray(7)]
      const before = Date.now()
      const response = await log.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json' }, body: { stream: (async function* () { yield* chunks })() } })
      const after = Date.now()
      expect(response?.status).toBe(200)
      const page = await log.events()
      expect(page.events.map((e) => e.id).sort()).toEqual(['sb-1', 'sb-2'])
      for (const event of page.events) {
        expect(Date.parse(event.receivedAt)).toBeGreaterThanOrEqual(before)
        expect(Date.parse(event.receivedAt)).toBeLessThanOrEqual(after)
      }
      expect((await log.log!.get('sb-2'))?.payload).toEqual({ note: 'ünïcode ✓' })
      expect(log.log!.corruptRecords).toBe(0)
    })

    it('is idempotent by id: a retried batch is neither stored nor counted twice', async () => {
      const log = await make('dedupe')
      const events = [makeEvent({ id: 'd-1' }), makeEvent({ id: 'd-2' })]
      await log.ingest(events)
      expect(await log.ingest(events)).toEqual({ accepted: 0, duplicates: 2, rejected: [] })
      expect(await log.ingest([events[0], makeEvent({ id: 'd-3' })])).toEqual({ accepted: 1, duplicates: 1, rejected: [] })
      const page = await log.events({ limit: 100 })
      expect(page.events.map((e) => e.id).sort()).toEqual(['d-1', 'd-2', 'd-3'])
      const stats = await log.stats()
      expect(stats.totals.accepted).toBe(3)
      expect(stats.totals.duplicates).toBe(3)
    })

    it('remembers ids across a restart on the same storage', async () => {
      const first = await make('restart')
      const events = [makeEvent({ id: 'r-1' }), makeEvent({ id: 'r-2' })]
      await first.ingest(events)
      await first.close()
      const second = await make('restart')
      expect(await second.ingest(events)).toEqual({ accepted: 0, duplicates: 2, rejected: [] })
      expect((await second.log!.get('r-1'))?.id).toBe('r-1')
    })

    it('stores one copy when 20 concurrent ingests carry one id', async () => {
      const log = await make('race')
      const event = makeEvent({ id: 'race-x' })
      const results = await Promise.all(Array.from({ length: 20 }, () => log.ingest([event])))
      expect(results.reduce((n, r) => n + r.accepted, 0)).toBe(1)
      expect(results.reduce((n, r) => n + r.duplicates, 0)).toBe(19)
      const page = await log.events({ limit: 1000 })
      expect(page.events.filter((e) => e.id === 'race-x')).toHaveLength(1)
    })

    it('stores an id repeated within one batch once and answers its repeats as duplicates', async () => {
      const log = await make('repeats')
      const a = makeEvent({ id: 'rep-a', payload: { n: 1 } })
      const batch = [a, makeEvent({ id: 'rep-b' }), { ...a, payload: { n: 2 } }, makeEvent({ id: 'rep-c' }), a]
      expect(await log.ingest(batch)).toEqual({ accepted: 3, duplicates: 2, rejected: [] })
      const page = await log.events({ limit: 100 })
      expect(page.events.map((e) => e.id).sort()).toEqual(['rep-a', 'rep-b', 'rep-c'])
      // The first occurrence is the one kept.
      expect((await log.log!.get('rep-a'))?.payload).toEqual({ n: 1 })
      expect(await log.ingest(batch)).toEqual({ accepted: 0, duplicates: 5, rejected: [] })
    })

    it('stores each id once when concurrent batches of one process overlap', async () => {
      const log = await make('overlap')
      const events = Array.from({ length: 6 }, (_, i) => makeEvent({ id: `ov-${i}` }))
      // Every batch shares ids with the others, in different orders and with different neighbours.
      const batches = Array.from({ length: 12 }, (_, k) => [events[k % 6]!, events[(k * 5 + 1) % 6]!, events[(k + 3) % 6]!])
      // Claims of concurrent batches interleave on some stores; none may wait for the other forever.
      const results = await Promise.all(batches.map((batch) => log.ingest(batch)))
      expect(results.reduce((n, r) => n + r.accepted, 0)).toBe(6)
      expect(results.reduce((n, r) => n + r.accepted + r.duplicates, 0)).toBe(36)
      const page = await log.events({ limit: 100 })
      expect(page.events.map((e) => e.id).sort()).toEqual(events.map((e) => e.id).sort())
    })

    it('forgets ids after the dedupe window', async () => {
      const log = await make('window', { dedupeWindowMs: 400 })
      const event = makeEvent({ id: 'w-1' })
      await log.ingest([event])
      expect((await log.ingest([event])).duplicates).toBe(1)
      await new Promise((resolve) => setTimeout(resolve, 700))
      expect((await log.ingest([event])).accepted).toBe(1)
    })

    it('lists events newest first across hour buckets, filtered by name, source and time, with a cursor', async () => {
      const log = await make('list')
      const now = Date.now()
      const at = [now - 3 * HOUR, now - 2 * HOUR - 1000, now - HOUR, now - 1000]
      for (const [i, receivedAt] of at.entries()) {
        await log.ingest([
          makeEvent({ id: `l-${i}-a`, name: 'ProductViewed', source: 'storefront' }),
          makeEvent({ id: `l-${i}-b`, name: 'AgentHeartbeat', source: 'agent' }),
        ], { receivedAt })
      }
      const all = await log.events({ limit: 100 })
      expect(all.events.map((e) => e.id)).toEqual(['l-3-b', 'l-3-a', 'l-2-b', 'l-2-a', 'l-1-b', 'l-1-a', 'l-0-b', 'l-0-a'])
      const pages: string[][] = []
      let cursor: string | undefined
      do {
        const page = await log.events({ limit: 3, cursor })
        pages.push(page.events.map((e) => e.id))
        cursor = page.nextCursor ?? undefined
      } while (cursor)
      expect(pages.flat()).toEqual(all.events.map((e) => e.id))
      expect(pages.map((p) => p.length)).toEqual([3, 3, 2])
      expect((await log.events({ source: 'agent' })).events.map((e) => e.id)).toEqual(['l-3-b', 'l-2-b', 'l-1-b', 'l-0-b'])
      expect((await log.events({ name: 'ProductViewed', since: now - 2.5 * HOUR, until: now - 30 * 60_000 })).events.map((e) => e.id)).toEqual(['l-2-a', 'l-1-a'])
    })

    it('prunes batches older than a time, touching only the hours it needs', async () => {
      const log = await make('prune')
      const now = Date.now()
      await log.ingest([makeEvent({ id: 'p-old' })], { receivedAt: now - 5 * HOUR })
      await log.ingest([makeEvent({ id: 'p-mid' })], { receivedAt: now - 2 * HOUR })
      await log.ingest([makeEvent({ id: 'p-new' })], { receivedAt: now })
      const getKeys = vi.spyOn(log.storage!, 'getKeys')
      expect(await log.prune({ olderThan: now - 3 * HOUR })).toMatchObject({ batches: 1 })
      // Only hour buckets at or before the cutoff (and, where claims do not expire by themselves,
      // the claims, and the few process identities kept beside them on fs) are listed, never the
      // whole store.
      for (const [base] of getKeys.mock.calls) expect(base).toMatch(/^events:(b:\d{10}|d|p)$/)
      getKeys.mockRestore()
      expect((await log.events()).events.map((e) => e.id)).toEqual(['p-new', 'p-mid'])
    })

    it.runIf(setup.oneStep)('stores an id again at once, in any process, when the batch that stored it was pruned', async () => {
      const log = await make('pruned-retry')
      const now = Date.now()
      const event = makeEvent({ id: 'pr-1' })
      await log.ingest([event], { receivedAt: now - 5 * HOUR })
      expect(await log.prune({ olderThan: now - 3 * HOUR })).toMatchObject({ batches: 1 })
      // Claim and record are written in one step: a claim whose record is gone holds nothing back.
      const other = await make('pruned-retry')
      expect(await other.ingest([event])).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      expect(await log.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
      expect(await other.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
      expect((await log.log!.get('pr-1'))?.id).toBe('pr-1')
    })

    it.skipIf(setup.oneStep)('stores an id again at once when the batch this process stored it in was pruned; another process waits for the claim to go stale', async () => {
      const log = await make('pruned-retry')
      const now = Date.now()
      const event = makeEvent({ id: 'pr-1' })
      await log.ingest([event], { receivedAt: now - 5 * HOUR })
      expect(await log.prune({ olderThan: now - 3 * HOUR })).toMatchObject({ batches: 1 })
      if (setup.name === 'redis') {
        // On Redis a batch is stored in one step, claims with the record, and a held claim means a
        // duplicate until it is stale (4 storage timeouts) with no record behind it: for every
        // process alike, since no process waits on another's claim there. (Retention is at least
        // the window: only a batch received long before it was claimed, like this one, is pruned
        // while its claims count.)
        const other = await make('pruned-retry')
        expect(await other.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
        expect(await log.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
        expect(await log.log!.get('pr-1')).toBeNull()
        return
      }
      if (setup.name === 'postgres') {
        // On PostgreSQL the event's row is the claim, and it went with its batch: any process
        // stores the id again at once, and once only.
        const other = await make('pruned-retry')
        expect(await other.ingest([event])).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
        expect(await log.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
        expect((await log.log!.get('pr-1'))?.id).toBe('pr-1')
        return
      }
      // The claim is fresh and its batch is gone. Another process cannot tell a deleted batch from
      // one still being written: it answers 503 until the claim is stale.
      const other = await make('pruned-retry')
      await expect(other.ingest([event])).rejects.toMatchObject({ code: 'in_progress', status: 503 })
      // This process knows the batch's outcome was final: the id is free to store again.
      expect(await log.ingest([event])).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      expect(await log.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
      expect((await log.log!.get('pr-1'))?.id).toBe('pr-1')
    })

    it('drops dedupe claims past the window when pruning, so they do not pile up', async () => {
      const log = await make('claims', { dedupeWindowMs: 300 })
      await log.ingest(Array.from({ length: 5 }, (_, i) => makeEvent({ id: `claim-${i}` })))
      expect(await log.log!.get('claim-0')).toMatchObject({ id: 'claim-0' })
      await new Promise((resolve) => setTimeout(resolve, 450))
      const pruned = await log.prune({ olderThan: 0 })
      // Redis expired them by itself; the other drivers have just removed them (the memory driver
      // keeps its claims beside the driver's map, so they are not storage keys).
      expect(await log.storage!.getKeys('events:d')).toEqual([])
      expect(pruned.claims).toBe(setup.name === 'redis' ? 0 : 5)
      expect(await log.log!.get('claim-0')).toBeNull()
    })

    it('never lists keys on the ingest path, and on the stats path only the instance registry', async () => {
      const log = await make('hot-path')
      const getKeys = vi.spyOn(log.storage!, 'getKeys')
      for (let i = 0; i < 5; i++) await log.ingest([makeEvent(), makeEvent()])
      await log.ingest([makeEvent({ id: 'hp' })])
      await log.ingest([makeEvent({ id: 'hp' })])
      expect(getKeys).not.toHaveBeenCalled()
      // A snapshot lists at most the registry (one key per instance, on drivers without a hash):
      // never anything that grows with the events.
      await log.stats()
      for (const [base] of getKeys.mock.calls) expect(base).toBe('stats:seen')
      getKeys.mockRestore()
    })
  })
}
