import { createStorage, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { describe, expect, it } from 'vitest'
import { createEventIngest } from '../../src/index'
import { defineEventLogSuite } from './event-log/suite'
import { makeEvent } from '../helpers/fixtures'

const storages = new Map<string, Storage>()

defineEventLogSuite({
  name: 'memory',
  oneStep: true,
  storage(key) {
    // The memory driver lives in the process: a "restart" reuses the same Storage object.
    if (!storages.has(key)) storages.set(key, createStorage({ driver: memoryDriver() }))
    return storages.get(key)!
  },
})

describe('EventLog on memory, after storage.clear()', () => {
  it('stores the ids of the cleared batches again when they are sent again', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const ingest = createEventIngest({ env: {}, storage })
    try {
      const events = [makeEvent({ id: 'clear-1' }), makeEvent({ id: 'clear-2' })]
      expect(await ingest.ingest(events)).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
      await storage.clear()
      // The claims live beside the driver's map and outlive clear(); the batch they name is gone.
      expect(await ingest.ingest(events)).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
      expect((await ingest.log!.get('clear-1'))?.id).toBe('clear-1')
      // Listed too: the hour index went with the clear and is written again.
      expect((await ingest.events()).events.map((e) => e.id).sort()).toEqual(['clear-1', 'clear-2'])
      expect(await ingest.ingest(events)).toEqual({ accepted: 0, duplicates: 2, rejected: [] })
    } finally {
      await ingest.close()
    }
  })
})

/** Runs `work` and counts the turns the event loop took meanwhile (immediates that got to run). */
async function countingTurns<T>(work: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0
  let counting = true
  const turn = () => {
    turns++
    if (counting) setImmediate(turn)
  }
  setImmediate(turn)
  try {
    return { result: await work(), turns }
  } finally {
    counting = false
  }
}

describe('EventLog on memory, pruning', () => {
  it('lets the event loop turn while it expires many dedupe claims', async () => {
    // Past the default bound of 100,000 events, the oldest batches would be dropped with their claims.
    const ingest = createEventIngest({ env: {}, dedupeWindowMs: 300, storage: { driver: 'memory', maxEvents: 200_000 } })
    try {
      // 200,000 claims: the claim table is walked a slice at a time.
      for (let b = 0; b < 2000; b++) await ingest.ingest(Array.from({ length: 100 }, (_, i) => makeEvent({ id: `many-${b}-${i}` })))
      await new Promise((resolve) => setTimeout(resolve, 350))
      // No batch is old enough to go: only the claims past the window do.
      const { result, turns } = await countingTurns(() => ingest.prune({ olderThan: 0 }))
      expect(result).toEqual({ batches: 0, claims: 200_000 })
      expect(turns).toBeGreaterThanOrEqual(3)
    } finally {
      await ingest.close()
    }
  })

  it('lets the event loop turn while a long prune runs (memory storage answers at once)', async () => {
    const ingest = createEventIngest({ env: {} })
    try {
      const old = Date.now() - 2 * 3_600_000
      for (let i = 0; i < 2000; i++) await ingest.ingest([makeEvent()], { receivedAt: old })
      const { result, turns } = await countingTurns(() => ingest.prune({ olderThan: Date.now() - 3_600_000 }))
      expect(result).toMatchObject({ batches: 2000 })
      // Every few hundred batches, I/O and timers get their turn: requests are not held for the
      // whole prune.
      expect(turns).toBeGreaterThanOrEqual(4)
    } finally {
      await ingest.close()
    }
  })
})
