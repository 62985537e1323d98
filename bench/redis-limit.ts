/**
 * What the Redis server itself takes of event-ingest's batch writes: the same script
 * (src/storage/redis-store.ts) with the same keys and arguments as the h3-redis target sends for a
 * batch of 50 (fresh ids, the batch's record, the minute counter; no outbox, as the bench's
 * servers have no sink), called from this process with many calls in flight on one connection
 * (ioredis writes each call at once, so they queue on the socket as a pipeline does). No HTTP, no
 * validation: the batches a second it reaches are the Redis server's limit for these commands.
 */
import { randomBytes } from 'node:crypto'
import Redis from 'ioredis'
import { createStorage } from 'unstorage'
import redisDriver from 'unstorage/drivers/redis'
import type { AtomicBatch } from '../src/storage/atomic'
import { acceptedCountKey, batchKey, claimValue } from '../src/storage/layout'
import { redisBatchStore } from '../src/storage/redis-store'
import { createBodyFactory } from './events'
import { redisActivityBetween, redisCounters, type RedisActivity } from './redis-keys'

export interface RedisLimit {
  /** Script calls (batches of 50) a second, all of them storing. */
  batchesPerSecond: number
  /** The Redis server's main-thread CPU per batch meanwhile, µs. */
  cpuUsPerBatch: number
  commandsPerBatch: number
  seconds: number
}

/** Runs the script for `seconds` with `inFlight` calls outstanding, under `base` (deleted by the caller). */
export async function measureRedisLimit(url: string, base: string, seconds: number, inFlight = 64): Promise<RedisLimit> {
  const monitor = new Redis(url, { maxRetriesPerRequest: 1 })
  const storage = createStorage({ driver: redisDriver({ base, url }) })
  try {
    const store = redisBatchStore(storage, 'events', { countsBase: 'stats' })
    if (!store) throw new Error('the Redis batch store is not available on this storage')
    const body = createBodyFactory(50)
    const tag = randomBytes(3).toString('hex')
    let serial = 0
    const nextBatch = (): AtomicBatch => {
      const n = serial++
      const receivedAt = Date.now()
      const key = batchKey('events', receivedAt, 'limit', tag, n)
      const record = body.next().toString('utf8')
      return {
        ids: Array.from({ length: 50 }, (_, i) => `lim_${tag}_${n.toString(36)}_${i}`),
        claim: claimValue(key, receivedAt),
        claimedAt: receivedAt,
        windowMs: 86_400_000,
        batchKey: key,
        record: () => record,
        counts: { key: acceptedCountKey('stats', Math.floor(receivedAt / 60_000)), ttlMs: 7_200_000 },
      }
    }
    // Warm-up: the script loaded, the connection busy.
    await Promise.all(Array.from({ length: inFlight }, () => store.append(nextBatch())))
    const before: RedisActivity = await redisCounters(monitor)
    const started = process.hrtime.bigint()
    const deadline = Date.now() + seconds * 1000
    let stored = 0
    const worker = async () => {
      while (Date.now() < deadline) {
        const result = await store.append(nextBatch())
        if (result.duplicates.length > 0) throw new Error('a fresh id was found held')
        stored++
      }
    }
    await Promise.all(Array.from({ length: inFlight }, worker))
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9
    const activity = redisActivityBetween(before, await redisCounters(monitor))
    const commands = Object.values(activity.calls).reduce((a, b) => a + b, 0)
    return { batchesPerSecond: stored / elapsed, cpuUsPerBatch: activity.usec / stored, commandsPerBatch: commands / stored, seconds: elapsed }
  } finally {
    await storage.dispose().catch(() => {})
    monitor.disconnect()
  }
}
