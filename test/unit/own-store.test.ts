import { createStorage, defineDriver } from 'unstorage'
import { describe, expect, it } from 'vitest'
import { claimKey, createEventIngest, type AtomicBatch, type AtomicBatchStore, type AtomicResult } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'

/**
 * A host's own store over a Map: claims, record and outbox entry set in one synchronous call,
 * as a transaction would. The storage reads the same Map, so the log lists and gets what it wrote.
 */
class MapStore implements AtomicBatchStore {
  calls = 0
  constructor(readonly data: Map<string, unknown>) {}
  append(batch: AtomicBatch): AtomicResult {
    this.calls++
    const keys = batch.ids.map((id) => claimKey('events:d', id))
    const duplicates = keys.flatMap((key, j) => (this.data.has(key) ? [j] : []))
    if (duplicates.length === keys.length) return { duplicates }
    const stored = keys.flatMap((key, j) => (this.data.has(key) ? [] : [j]))
    for (const j of stored) this.data.set(keys[j]!, batch.claim)
    this.data.set(batch.batchKey, batch.record(duplicates.length > 0 ? stored : undefined))
    if (batch.outbox) this.data.set(batch.outbox.key, batch.outbox.entry(stored.length))
    return { duplicates }
  }
}

/** A plain driver over `data`. */
function mapDriver(data: Map<string, unknown>) {
  return defineDriver(() => ({
    name: 'map',
    hasItem: (key: string) => data.has(key),
    getItem: (key: string) => data.get(key) ?? null,
    getItemRaw: (key: string) => data.get(key) ?? null,
    setItem: (key: string, value: string) => void data.set(key, value),
    setItemRaw: (key: string, value: unknown) => void data.set(key, value),
    removeItem: (key: string) => void data.delete(key),
    getKeys: (base: string) => [...data.keys()].filter((key) => key.startsWith(base)),
    clear: () => data.clear(),
  }))(undefined)
}

describe('a store of the host\'s own (the store option)', () => {
  it('is used for every batch: dedupe across batches, duplicates reported, records listed and read back', async () => {
    const data = new Map<string, unknown>()
    const store = new MapStore(data)
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: mapDriver(data) }), store })
    try {
      const a = makeEvent({ id: 'own-a', payload: { n: 1 } })
      const b = makeEvent({ id: 'own-b' })
      expect(await ingest.ingest([a, b])).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
      expect(await ingest.ingest([a, makeEvent({ id: 'own-c' }), b])).toEqual({ accepted: 1, duplicates: 2, rejected: [] })
      expect(await ingest.ingest([b])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
      expect(store.calls).toBe(3)
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id).sort()).toEqual(['own-a', 'own-b', 'own-c'])
      expect(await ingest.log!.get('own-a')).toMatchObject({ id: 'own-a', payload: { n: 1 } })
      expect(ingest.log!.atomicDedupe).toBe(true)
      expect((await ingest.stats()).totals).toMatchObject({ accepted: 3, duplicates: 3 })
    } finally {
      await ingest.close()
    }
  })

  it('is refused when the core is created unless it has an append method', () => {
    for (const store of [{}, { append: 'no' }, 42, null, 'redis']) {
      expect(() => createEventIngest({ env: {}, store: store as never }), JSON.stringify(store)).toThrow(/store must be a batch store, an object with an append\(batch\) method/)
    }
  })
})
