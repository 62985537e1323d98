import { createStorage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { describe, expect, it } from 'vitest'
import { createEventIngest, DEFAULT_MEMORY_MAX_EVENTS, type EventIngest } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'

/** A batch of `size` events with ids `<label>-0` ... */
const batch = (label: string, size: number) => Array.from({ length: size }, (_, i) => makeEvent({ id: `${label}-${i}` }))

async function listedIds(ingest: EventIngest<any>): Promise<string[]> {
  const ids: string[] = []
  let cursor: string | undefined
  do {
    const page = await ingest.events({ since: 0, limit: 1000, cursor })
    ids.push(...page.events.map((e) => e.id))
    cursor = page.nextCursor ?? undefined
  } while (cursor)
  return ids.sort()
}

describe('memory storage bound (storage.maxEvents)', () => {
  it('drops nothing at the cap; one batch over drops the oldest batch, counts it, and says so once', async () => {
    const errors: string[] = []
    const ingest = createEventIngest({ env: {}, storage: { driver: 'memory', maxEvents: 10 }, onError: (e) => errors.push((e as Error).message) })
    try {
      for (let b = 0; b < 5; b++) expect(await ingest.ingest(batch(`b${b}`, 2))).toMatchObject({ accepted: 2 })
      expect(ingest.log!.dropped).toEqual({ batches: 0, events: 0 })
      expect(await listedIds(ingest)).toHaveLength(10)
      expect(errors).toEqual([])

      expect(await ingest.ingest(batch('b5', 2))).toMatchObject({ accepted: 2 })
      expect(ingest.log!.dropped).toEqual({ batches: 1, events: 2 })
      const ids = await listedIds(ingest)
      expect(ids).toHaveLength(10)
      expect(ids).not.toContain('b0-0')
      expect(ids).toContain('b5-1')
      expect(await ingest.log!.get('b0-0')).toBeNull()
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/memory storage holds 10 events \(maxEvents\)/)

      await ingest.ingest(batch('b6', 2))
      expect(ingest.log!.dropped).toEqual({ batches: 2, events: 4 })
      expect(errors, 'said once, counted after').toHaveLength(1)
    } finally {
      await ingest.close()
    }
  })

  it('keeps at most storage.maxBytes of batches: at the bound nothing is dropped, one batch over drops the oldest', async () => {
    // Large events reach a byte bound long before the event bound.
    const big = (prefix: string) => [makeEvent({ id: `${prefix}-0`, payload: { pad: 'x'.repeat(8000) } })]
    const probe = createEventIngest({ env: {}, storage: { driver: 'memory', maxBytes: Infinity, maxEvents: 10 } })
    await probe.ingest(big('p'))
    const size = probe.log!.kept.bytes
    await probe.close()
    expect(size).toBeGreaterThan(8000)
    const errors: string[] = []
    const ingest = createEventIngest({ env: {}, storage: { driver: 'memory', maxBytes: 3 * size }, onError: (e) => errors.push((e as Error).message) })
    try {
      for (const prefix of ['a', 'b', 'c']) await ingest.ingest(big(prefix))
      expect(ingest.log!.kept).toEqual({ batches: 3, events: 3, bytes: 3 * size })
      expect(ingest.log!.dropped).toEqual({ batches: 0, events: 0 })
      await ingest.ingest(big('d'))
      expect(ingest.log!.dropped).toEqual({ batches: 1, events: 1 })
      expect(ingest.log!.kept.bytes).toBe(3 * size)
      expect(await listedIds(ingest)).toEqual(['b-0', 'c-0', 'd-0'])
      expect(errors[0]).toMatch(new RegExp(`memory storage holds ${3 * size} bytes of batches \\(maxBytes\\)`))
    } finally {
      await ingest.close()
    }
  })

  it('counts a pruned batch out of what the bound holds', async () => {
    const ingest = createEventIngest({ env: {}, storage: { driver: 'memory', maxEvents: 100, maxBytes: 1_000_000 } })
    try {
      await ingest.ingest(batch('p1', 3))
      await ingest.ingest(batch('p2', 2))
      expect(ingest.log!.kept).toMatchObject({ batches: 2, events: 5 })
      expect(ingest.log!.kept.bytes).toBeGreaterThan(0)
      expect((await ingest.prune({ olderThan: Date.now() + 60_000 })).batches).toBe(2)
      expect(ingest.log!.kept).toEqual({ batches: 0, events: 0, bytes: 0 })
    } finally {
      await ingest.close()
    }
  })

  it('after a prune, drops the oldest batch still held (not one the prune took) once over the bound', async () => {
    const ingest = createEventIngest({ env: {}, storage: { driver: 'memory', maxEvents: 3 } })
    try {
      await ingest.ingest(batch('p1', 2))
      await ingest.ingest(batch('p2', 1))
      expect((await ingest.prune({ olderThan: Date.now() + 60_000 })).batches).toBe(2)
      await ingest.ingest(batch('q1', 2))
      await ingest.ingest(batch('q2', 1))
      expect(ingest.log!.dropped).toEqual({ batches: 0, events: 0 })
      await ingest.ingest(batch('q3', 1))
      expect(ingest.log!.dropped).toEqual({ batches: 1, events: 2 })
      expect(ingest.log!.kept).toMatchObject({ batches: 2, events: 2 })
      expect(await listedIds(ingest)).toEqual(['q2-0', 'q3-0'])
    } finally {
      await ingest.close()
    }
  })

  it('after thousands of prunes that kept it under the bound, still drops exactly the oldest batch held', async () => {
    const ingest = createEventIngest({ env: {}, storage: { driver: 'memory', maxEvents: 3 } })
    try {
      for (let i = 0; i < 2500; i++) {
        await ingest.ingest(batch(`p${i}`, 1))
        expect((await ingest.prune({ olderThan: Date.now() + 60_000 })).batches).toBe(1)
      }
      expect(ingest.log!.kept).toEqual({ batches: 0, events: 0, bytes: 0 })
      expect(ingest.log!.dropped).toEqual({ batches: 0, events: 0 })
      for (const label of ['a', 'b', 'c', 'd']) await ingest.ingest(batch(label, 1))
      expect(ingest.log!.dropped).toEqual({ batches: 1, events: 1 })
      expect(await listedIds(ingest)).toEqual(['b-0', 'c-0', 'd-0'])
    } finally {
      await ingest.close()
    }
  })

  it('keeps the age order of the batches a prune left, once thousands were pruned before them', async () => {
    const ingest = createEventIngest({ env: {}, storage: { driver: 'memory', maxEvents: 1600 } })
    try {
      for (let i = 0; i < 1500; i++) await ingest.ingest(batch(`old${i}`, 1))
      await new Promise((resolve) => setTimeout(resolve, 5))
      const cut = Date.now()
      await new Promise((resolve) => setTimeout(resolve, 5))
      for (let i = 0; i < 100; i++) await ingest.ingest(batch(`mid${String(i).padStart(3, '0')}`, 1))
      expect((await ingest.prune({ olderThan: cut })).batches).toBe(1500)
      expect(ingest.log!.kept).toMatchObject({ batches: 100, events: 100 })
      // Over the bound by 10: the 10 oldest that are left go, in the order they came.
      for (let i = 0; i < 1510; i++) await ingest.ingest(batch(`new${i}`, 1))
      expect(ingest.log!.dropped).toEqual({ batches: 10, events: 10 })
      const ids = await listedIds(ingest)
      expect(ids.filter((id) => id.startsWith('mid'))).toEqual(Array.from({ length: 90 }, (_, i) => `mid${String(i + 10).padStart(3, '0')}-0`))
      expect(ids.filter((id) => id.startsWith('new'))).toHaveLength(1510)
    } finally {
      await ingest.close()
    }
  })

  it('keeps exactly the newest batches over thousands of drops', async () => {
    const ingest = createEventIngest({ env: {}, storage: { driver: 'memory', maxEvents: 10 } })
    try {
      for (let i = 0; i < 5000; i++) await ingest.ingest(batch(`n${String(i).padStart(4, '0')}`, 1))
      expect(ingest.log!.kept).toMatchObject({ batches: 10, events: 10 })
      expect(ingest.log!.dropped).toEqual({ batches: 4990, events: 4990 })
      expect(await listedIds(ingest)).toEqual(Array.from({ length: 10 }, (_, i) => `n${4990 + i}-0`))
      // The dropped ids are forgotten, the kept ones still dedupe.
      expect(await ingest.ingest(batch('n4999', 1))).toMatchObject({ accepted: 0, duplicates: 1 })
      expect(await ingest.ingest(batch('n0000', 1))).toMatchObject({ accepted: 1, duplicates: 0 })
    } finally {
      await ingest.close()
    }
  })

  it('refuses a maxBytes that is not a positive integer, naming it, when the core is created', () => {
    for (const maxBytes of [0, -1, 1.5, Number.NaN]) {
      expect(() => createEventIngest({ env: {}, storage: { driver: 'memory', maxBytes } }), String(maxBytes)).toThrow(/storage\.maxBytes must be a positive integer or Infinity/)
    }
  })

  it('forgets the ids of a dropped batch (sent again, they are stored again); ids still kept stay duplicates', async () => {
    const ingest = createEventIngest({ env: {}, storage: { driver: 'memory', maxEvents: 4 } })
    try {
      await ingest.ingest(batch('old', 2))
      await ingest.ingest(batch('mid', 2))
      await ingest.ingest(batch('new', 2))
      expect(ingest.log!.dropped).toEqual({ batches: 1, events: 2 })
      expect(await ingest.ingest(batch('mid', 2))).toEqual({ accepted: 0, duplicates: 2, rejected: [] })
      // Forgotten with its batch: stored again, as a new batch (which drops `mid`, now the oldest).
      expect(await ingest.ingest(batch('old', 2))).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
      expect(await listedIds(ingest)).toEqual(['new-0', 'new-1', 'old-0', 'old-1'])
      expect(await ingest.ingest(batch('old', 2))).toEqual({ accepted: 0, duplicates: 2, rejected: [] })
    } finally {
      await ingest.close()
    }
  })

  it(`keeps ${DEFAULT_MEMORY_MAX_EVENTS.toLocaleString('en')} events by default, on memory: and with no storage given`, { timeout: 60_000 }, async () => {
    expect(DEFAULT_MEMORY_MAX_EVENTS).toBe(100_000)
    for (const storage of ['memory:', undefined]) {
      const ingest = createEventIngest({ env: {}, storage, onError: () => {} })
      try {
        for (let b = 0; b < DEFAULT_MEMORY_MAX_EVENTS / 1000; b++) await ingest.ingest(batch(`d${b}`, 1000))
        expect(ingest.log!.dropped).toEqual({ batches: 0, events: 0 })
        await ingest.ingest(batch('over', 1))
        expect(ingest.log!.dropped).toEqual({ batches: 1, events: 1000 })
      } finally {
        await ingest.close()
      }
    }
  })

  it('keeps everything with maxEvents: Infinity, and on a memory Storage passed ready', async () => {
    for (const storage of [{ driver: 'memory' as const, maxEvents: Infinity }, createStorage({ driver: memoryDriver() })]) {
      const ingest = createEventIngest({ env: {}, storage })
      try {
        for (let b = 0; b < 3; b++) await ingest.ingest(batch(`k${b}`, 1000))
        expect(ingest.log!.dropped).toEqual({ batches: 0, events: 0 })
      } finally {
        await ingest.close()
      }
    }
  })

  it('refuses a maxEvents that is not a positive integer, naming it, when the core is created', async () => {
    for (const maxEvents of [0, -1, 1.5, Number.NaN, '10' as unknown as number]) {
      expect(() => createEventIngest({ env: {}, storage: { driver: 'memory', maxEvents } }), String(maxEvents)).toThrow(/storage\.maxEvents must be a positive integer or Infinity/)
    }
    // 1 is the smallest: each new batch drops the one before.
    const ingest = createEventIngest({ env: {}, storage: { driver: 'memory', maxEvents: 1 } })
    try {
      await ingest.ingest(batch('one', 1))
      await ingest.ingest(batch('two', 1))
      expect(ingest.log!.dropped).toEqual({ batches: 1, events: 1 })
      expect(await listedIds(ingest)).toEqual(['two-0'])
    } finally {
      await ingest.close()
    }
  })
})
