import { createStorage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { describe, expect, it } from 'vitest'
import { createEventIngest, type EventEnvelope } from '../../src/index'
import { createEventLog } from '../../src/log/event-log'
import { makeEvent } from '../helpers/fixtures'

const events = (...ids: string[]) => ids.map((id) => makeEvent({ id })) as unknown as EventEnvelope[]

describe('the memory driver: one synchronous step per batch', () => {
  it('answers append from the call itself, with the record already in the driver', async () => {
    const driver = memoryDriver()
    const storage = createStorage({ driver })
    const log = createEventLog({ storage, instanceId: 'mem' })
    let microtasks = 0
    queueMicrotask(() => microtasks++)
    const first = log.appendNow(events('m1', 'm2'), Date.now())
    const second = log.appendNow(events('m2', 'm3'), Date.now())
    // Both answered before any microtask ran: nothing on the path was awaited.
    expect(microtasks).toBe(0)
    expect(first).not.toBeInstanceOf(Promise)
    expect(second).toMatchObject({ stored: 1, duplicateIndexes: [0] })
    const map = driver.getInstance!() as Map<string, unknown>
    expect(map.has((first as { batchKey: string }).batchKey)).toBe(true)
    expect((await log.get('m3'))?.id).toBe('m3')
    await log.close()
  })

  it('completes ingests in the order they were called, each within a turn of the microtask queue', async () => {
    const ingest = createEventIngest({ env: {} })
    await ingest.ready()
    try {
      const order: string[] = []
      const ingests = ['i0', 'i1', 'i2'].map((id) => ingest.ingest([makeEvent({ id })]).then((result) => order.push(`${id}:${result.accepted}`)))
      // A chain of microtasks started after the ingests: each ingest settles before its second link.
      void Promise.resolve().then(() => order.push('tick 1')).then(() => order.push('tick 2')).then(() => order.push('tick 3'))
      await Promise.all(ingests)
      await new Promise((resolve) => setImmediate(resolve))
      expect(order.indexOf('i2:1')).toBeLessThan(order.indexOf('tick 2'))
      expect(order.slice(0, 3)).toEqual(['i0:1', 'i1:1', 'i2:1'])
    } finally {
      await ingest.close()
    }
  })

  it('writes where unstorage reads, with the memory driver mounted under a base', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const mounted = memoryDriver()
    storage.mount('events', mounted)
    const log = createEventLog({ storage, instanceId: 'mnt', outbox: true })
    const result = log.appendNow(events('k1', 'k2'), Date.now(), { text: JSON.stringify(events('k1', 'k2')) })
    expect(result).not.toBeInstanceOf(Promise)
    const { batchKey, outboxKey } = result as { batchKey: string; outboxKey: string }
    // The driver holds the keys without the mount's base; the storage finds them under it.
    const map = mounted.getInstance!() as Map<string, unknown>
    expect(map.has(batchKey.slice('events:'.length))).toBe(true)
    expect(await storage.getKeys('events:b')).toEqual([batchKey])
    expect(await storage.hasItem(outboxKey)).toBe(true)
    expect(await storage.getItem('events:hours')).toHaveLength(1)
    expect((await log.list({ since: 0 })).events.map((e) => e.id).sort()).toEqual(['k1', 'k2'])
    expect((await log.get('k2'))?.id).toBe('k2')
    await log.close()
  })

  it('takes a claim over at once when its batch is gone, and keeps dedupe for the batches still there', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const log = createEventLog({ storage, instanceId: 'gone' })
    const kept = log.appendNow(events('g1'), Date.now()) as { batchKey: string }
    const removed = log.appendNow(events('g2'), Date.now()) as { batchKey: string }
    await storage.removeItem(removed.batchKey)
    expect(log.appendNow(events('g1', 'g2'), Date.now())).toMatchObject({ stored: 1, duplicateIndexes: [0] })
    expect(kept.batchKey).not.toBe(removed.batchKey)
    await log.close()
  })
})
