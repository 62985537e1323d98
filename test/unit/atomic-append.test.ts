import { createStorage, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { afterEach, describe, expect, it } from 'vitest'
import type { AtomicBatch, AtomicBatchStore, AtomicResult, EventEnvelope } from '../../src/index'
import { createEventLog, parseRecord, type AppendResult, type EventLog, type EventLogOptions } from '../../src/log/event-log'
import { makeEvent } from '../helpers/fixtures'
import { waitFor } from '../helpers/sink'

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A store that answers each call as its script says, and keeps the batches it was given. */
class ScriptedStore implements AtomicBatchStore {
  readonly batches: AtomicBatch[] = []
  constructor(private readonly script: (batch: AtomicBatch, call: number) => AtomicResult | Promise<AtomicResult>) {}
  append(batch: AtomicBatch): AtomicResult | Promise<AtomicResult> {
    this.batches.push(batch)
    return this.script(batch, this.batches.length - 1)
  }
}

/** Writes what a one-step store would: the record of the new events, at the batch key. */
async function land(storage: Storage, batch: AtomicBatch, duplicates: number[] = []): Promise<void> {
  const positions = duplicates.length === 0 ? undefined : batch.ids.map((_, j) => j).filter((j) => !duplicates.includes(j))
  await storage.setItemRaw(batch.batchKey, batch.record(positions))
}

const events = (...ids: string[]) => ids.map((id) => makeEvent({ id, payload: { id } })) as unknown as EventEnvelope[]

const logs: EventLog[] = []
afterEach(async () => {
  await Promise.all(logs.splice(0).map((log) => log.close()))
})

function logOn(storage: Storage, store: AtomicBatchStore, extra: Partial<EventLogOptions> = {}): EventLog {
  const log = createEventLog({ storage, instanceId: 'inst', timeoutMs: 50, store, ...extra })
  logs.push(log)
  return log
}

describe('the one-step append, against a scripted store', () => {
  it('maps the duplicates the store reports back to batch positions, and stores the rest', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const store = new ScriptedStore(async (batch) => {
      await land(storage, batch, [1])
      return { duplicates: [1] }
    })
    const log = logOn(storage, store)
    const result = await log.append(events('a', 'b', 'c'), Date.now())
    expect(store.batches).toHaveLength(1)
    expect(store.batches[0]!.ids).toEqual(['a', 'b', 'c'])
    expect(result).toMatchObject({ stored: 2, duplicateIndexes: [1], batchKey: store.batches[0]!.batchKey })
    // The record the store was handed for positions 0 and 2 holds exactly those events.
    expect(parseRecord(store.batches[0]!.record([0, 2]), store.batches[0]!.batchKey)?.events.map((e) => e.id)).toEqual(['a', 'c'])
    expect((await log.list({ since: 0 })).events.map((e) => e.id).sort()).toEqual(['a', 'c'])
  })

  it('hands the store each id once: repeats within the batch are duplicates at their later places', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const store = new ScriptedStore((_, call) => ({ duplicates: [[], [0], [1]][call]! }))
    const log = logOn(storage, store)
    const batch = events('a', 'b', 'a', 'c', 'b')
    expect(await log.append(batch, Date.now())).toMatchObject({ stored: 3, duplicateIndexes: [2, 4] })
    expect(store.batches[0]!.ids).toEqual(['a', 'b', 'c'])
    // With a repeat the text as received is not the record: it is the distinct events, first places kept.
    const record = parseRecord(store.batches[0]!.record(), store.batches[0]!.batchKey)
    expect(record?.events.map((e) => e.id)).toEqual(['a', 'b', 'c'])
    // Held by another batch, `a` is a duplicate at every place it appears.
    expect(await log.append(batch, Date.now())).toMatchObject({ stored: 2, duplicateIndexes: [0, 2, 4] })
    // The store's positions count distinct ids: its 1 is `b`, at position 2 of this batch.
    expect(await log.append(events('a', 'a', 'b', 'c'), Date.now())).toMatchObject({ stored: 2, duplicateIndexes: [1, 2] })
    expect(store.batches[2]!.ids).toEqual(['a', 'b', 'c'])
  })

  it('gives the store the text as received when every event is new and none repeats', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const store = new ScriptedStore(() => ({ duplicates: [] }))
    const log = logOn(storage, store, { outbox: true })
    const batch = events('t1', 't2')
    const text = ` ${JSON.stringify(batch)} `
    const result = await log.append(batch, 1_700_000_000_000, { text })
    const given = store.batches[0]!
    expect(given.record()).toBe(`{"v":1,"receivedAt":1700000000000,"instance":"inst","events":${text}}`)
    expect(given.claim).toMatch(new RegExp(`^${given.batchKey}\\|\\d+$`))
    expect(JSON.parse(given.outbox!.entry(2))).toEqual({ batch: given.batchKey, events: 2, receivedAt: 1_700_000_000_000 })
    expect(result).toMatchObject({ stored: 2, duplicateIndexes: [], outboxKey: given.outbox!.key })
  })

  it('answers a batch of duplicates only with stored 0 and no batch key', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const log = logOn(storage, new ScriptedStore((batch) => ({ duplicates: batch.ids.map((_, j) => j) })))
    expect(await log.append(events('d1', 'd1', 'd2'), Date.now())).toEqual({ stored: 0, duplicateIndexes: [0, 1, 2] })
  })

  it('answers 503 when the outcome is unknown, then reports the batch once when it turns out stored', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const late: (AppendResult & { batchKey: string })[] = []
    // The write lands, but its answer is lost (a Redis timeout after the script ran).
    const store = new ScriptedStore(async (batch) => {
      await land(storage, batch, [1])
      throw new Error('command timed out')
    })
    const log = logOn(storage, store, { onLateWrite: (result) => late.push(result) })
    await expect(log.append(events('u1', 'u2', 'u3'), Date.now())).rejects.toMatchObject({ code: 'storage_unavailable', status: 503 })
    expect(late).toEqual([])
    await waitFor(() => late.length > 0, 2000, 'the late write to be reported')
    // Read back from the record: the event the store held elsewhere is not counted as stored.
    expect(late).toEqual([{ stored: 2, duplicateIndexes: [1], batchKey: store.batches[0]!.batchKey, outboxKey: undefined }])
    await pause(300)
    await log.close()
    expect(late).toHaveLength(1)
  })

  it('answers 503 for a store that never answers, and reports nothing when nothing landed', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const reports: unknown[] = []
    const store = new ScriptedStore(() => new Promise<AtomicResult>(() => {}))
    const log = logOn(storage, store, { onLateWrite: (result) => reports.push(result), onUnstored: (key) => reports.push(key), onError: (error) => reports.push(error) })
    const started = Date.now()
    await expect(log.append(events('n1'), Date.now())).rejects.toMatchObject({ code: 'storage_unavailable' })
    expect(Date.now() - started).toBeLessThan(1000)
    await pause(300)
    await log.close()
    expect(reports).toEqual([])
    expect(await storage.getKeys('events:b')).toEqual([])
  })

  it('answers 503 for a store that throws, with nothing stored and nothing reported', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const reports: unknown[] = []
    const store = new ScriptedStore(() => {
      throw new Error('script failed to load')
    })
    const log = logOn(storage, store, { onLateWrite: (result) => reports.push(result) })
    await expect(log.append(events('s1'), Date.now())).rejects.toThrow(/storage is unavailable: script failed to load/)
    await expect(log.append(events('s2'), Date.now())).rejects.toMatchObject({ code: 'storage_unavailable' })
    await pause(200)
    await log.close()
    expect(reports).toEqual([])
  })
})
