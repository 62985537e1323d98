import { normalizeKey, type Storage } from 'unstorage'
import { createHistogram, mean, merge, quantile, record, type Histogram } from './histogram'
import { canonicalTime } from '../model/time'

const MINUTE = 60_000
/** How stale this instance's registry entry may get before it is rewritten. */
const REGISTRY_REFRESH_MS = MINUTE
/**
 * An instance's `lastSeen` may lag its newest bucket by up to {@link REGISTRY_REFRESH_MS}; one more
 * minute absorbs clock skew between instances.
 */
const REGISTRY_GRACE_MS = 2 * MINUTE

/** The default of every optional setting of {@link createStatsWindow}. */
export const statsDefaults = Object.freeze({
  prefix: 'stats',
  windowMinutes: 60,
  futureToleranceMs: 300_000,
  pastToleranceMs: 604_800_000,
  flushIntervalMs: 5000,
})

/** Options of {@link createStatsWindow}. */
export interface StatsOptions {
  /** Where the per-minute buckets and the instance registry are persisted; may be shared by instances. */
  storage: Storage
  /** This process. Buckets are written per instance, so instances never overwrite each other's counts. */
  instanceId: string
  /**
   * Key prefix inside `storage`.
   * @default 'stats'
   */
  prefix?: string
  /**
   * Length of the window in minutes, the current minute included.
   * @default 60
   */
  windowMinutes?: number
  /**
   * Events whose `occurredAt` is later than `receivedAt` plus this are counted as `futureEvents` and kept
   * out of lag; earlier ones, still ahead of `receivedAt`, count as a lag of 0.
   * @default 300_000
   */
  futureToleranceMs?: number
  /**
   * Events whose `occurredAt` is earlier than `receivedAt` minus this are counted as `pastEvents` and
   * kept out of lag: one event of year 0 would otherwise move the hour's average by centuries.
   * Offline producers (mobile apps, agents back from a night without network) legitimately send
   * events hours or days old, so the default keeps a week in lag. `Infinity` keeps every event.
   * @default 604_800_000 (7 days)
   */
  pastToleranceMs?: number
  /**
   * How often this instance's changed buckets are written. The timer is `unref()`'d; `0` disables it
   * (call `flush()` yourself).
   * @default 5000
   */
  flushIntervalMs?: number
  /**
   * Called when a timer flush fails. The buckets stay dirty and are written by the next flush.
   * @default () => {} (the error is dropped)
   */
  onError?: (error: unknown) => void
  /**
   * The clock, for tests.
   * @default Date.now
   */
  now?: () => number
}

/** The fields of an accepted event that stats read. */
export interface StatsEvent {
  name: string
  source: string
  /** ISO 8601 UTC. */
  occurredAt: string
}

/**
 * Last-hour counters of the ingest service, kept in per-minute buckets per instance. Recording is
 * synchronous and O(1) per event; reading costs a fixed number of storage calls per instance,
 * whatever the volume. Counts are bucketed by the minute they were received (or forwarded).
 */
export interface StatsWindow {
  /** Counts accepted events by name and source, and their lag `receivedAt - occurredAt`. */
  /** `times`, when given, holds each event's `occurredAt` in ms (NaN where not known). */
  recordAccepted(events: readonly StatsEvent[], receivedAt: number, times?: readonly number[]): void
  /** Counts invalid events inside accepted requests. */
  recordRejected(count: number, receivedAt: number): void
  /** Counts events already stored before (same id). */
  recordDuplicates(count: number, receivedAt: number): void
  /** Counts the events of a request that failed with 503 because storage failed. */
  recordStorageFailure(events: number, receivedAt: number): void
  /** Counts a whole request refused (401, 413, 400...) under its error code. */
  recordRefused(code: string, receivedAt: number): void
  /** Counts events delivered to the forwarding sink. */
  recordForwarded(events: number, at: number): void
  /**
   * Counts a forward failure by kind: `timeout`, `network`, `5xx`, `408`, `425`, `429`, `rejected` (a
   * permanent 4xx), `partial` (a 2xx that listed rejected events).
   */
  recordForwardFailure(kind: string, at: number): void
  /** Sums the window over every instance seen in it. */
  snapshot(): Promise<StatsSnapshot>
  /** Writes this instance's changed buckets now. */
  flush(): Promise<void>
  /** Stops the flush timer and flushes. */
  close(): Promise<void>
}

/** What `GET /admin/events/stats` answers: the window summed over all instances. JSON-serialisable. */
export interface StatsSnapshot {
  windowMinutes: number
  /** Start of the oldest minute of the window. */
  from: string
  /** The moment of the snapshot. */
  to: string
  /** Instances counted: this one and every other seen in the window. */
  instances: number
  totals: { accepted: number; duplicates: number; rejected: number }
  failures: {
    rejected: number
    storage: number
    forward: number
    forwardByKind: Record<string, number>
    refusedRequests: number
    refusedByCode: Record<string, number>
  }
  forwarded: number
  byName: Record<string, number>
  bySource: Record<string, number>
  /**
   * Lag of accepted events, in whole ms (lags are whole ms; finer digits of the percentiles would be
   * noise). The average and max are exact before rounding, percentiles within 1% (see `Histogram`).
   */
  lag: {
    count: number
    averageMs: number | null
    p50Ms: number | null
    p95Ms: number | null
    p99Ms: number | null
    maxMs: number | null
  }
  /** Accepted events that claimed a time beyond `futureToleranceMs` after their receipt. */
  futureEvents: number
  /** Accepted events that claimed a time more than `pastToleranceMs` before their receipt. */
  pastEvents: number
  /** One entry per minute of the window, oldest first, zero-filled. */
  series: { minute: string; accepted: number; rejected: number; duplicates: number; byName: Record<string, number> }[]
}

const counterFields = [
  'accepted',
  'duplicates',
  'rejected',
  'storageFailures',
  'refused',
  'forwarded',
  'forwardFailures',
  'futureEvents',
  'pastEvents',
] as const
const mapFields = ['byName', 'bySource', 'refusedByCode', 'forwardByKind'] as const

type Counters = Record<(typeof counterFields)[number], number>
type MapField = (typeof mapFields)[number]

/** One minute of one instance, in memory. */
type Bucket = Counters & Record<MapField, Map<string, number>> & { lag: Histogram }

/** One minute of one instance, as stored. */
type StoredBucket = { v: 1 } & Counters & Record<MapField, Record<string, number>> & { lag: Histogram }

/**
 * Creates the stats window of one instance. Its buckets are written to
 * `${prefix}:b:${instanceId}:${minute}` (with a TTL of two windows) and the instance registers in
 * `${prefix}:instances`. A restarted instance with the same id picks its buckets back up.
 *
 * @example
 * const stats = createStatsWindow({ storage, instanceId: `${hostname()}-${process.pid}` })
 * stats.recordAccepted(result.events, Date.now())
 * const body = await stats.snapshot()
 */
export function createStatsWindow(options: StatsOptions): StatsWindow {
  const { storage, instanceId } = options
  const prefix = options.prefix ?? statsDefaults.prefix
  const windowMinutes = options.windowMinutes ?? statsDefaults.windowMinutes
  const futureToleranceMs = options.futureToleranceMs ?? statsDefaults.futureToleranceMs
  const pastToleranceMs = options.pastToleranceMs ?? statsDefaults.pastToleranceMs
  const flushIntervalMs = options.flushIntervalMs ?? statsDefaults.flushIntervalMs
  const onError = options.onError ?? (() => {})
  const now = options.now ?? Date.now

  checkKeySegment('instanceId', instanceId)
  checkKeySegment('prefix', prefix)
  if (!Number.isSafeInteger(windowMinutes) || windowMinutes < 1) {
    throw new RangeError(`windowMinutes must be a positive integer, got ${windowMinutes}`)
  }
  if (!(futureToleranceMs >= 0 && futureToleranceMs < Infinity)) {
    throw new RangeError(`futureToleranceMs must be a finite number >= 0, got ${futureToleranceMs}`)
  }
  if (typeof pastToleranceMs !== 'number' || !(pastToleranceMs >= 0)) {
    throw new RangeError(`pastToleranceMs must be a number >= 0 (Infinity keeps every past event in lag), got ${pastToleranceMs}`)
  }
  if (!(flushIntervalMs >= 0 && flushIntervalMs < Infinity)) {
    throw new RangeError(`flushIntervalMs must be a finite number >= 0, got ${flushIntervalMs}`)
  }

  const registryKey = `${prefix}:instances`
  const bucketKey = (id: string, minute: number) => `${prefix}:b:${id}:${minute}`
  const ttl = windowMinutes * 60 * 2

  const buckets = new Map<number, Bucket>()
  const dirty = new Set<number>()
  let currentMinute = Number.NaN
  let current: Bucket | undefined
  let restored: Promise<void> | undefined
  let registeredAt = Number.NEGATIVE_INFINITY
  let flushing: Promise<void> = Promise.resolve()

  const oldestMinute = (at: number) => Math.floor(at / MINUTE) - windowMinutes + 1

  function bucketAt(at: number): Bucket {
    const minute = Math.floor(at / MINUTE)
    if (minute === currentMinute && current) {
      dirty.add(minute)
      return current
    }
    let bucket = buckets.get(minute)
    if (!bucket) {
      if (!Number.isFinite(minute)) throw new RangeError(`the time of a count must be a finite number of ms, got ${at}`)
      prune()
      bucket = emptyBucket()
      buckets.set(minute, bucket)
    }
    currentMinute = minute
    current = bucket
    dirty.add(minute)
    return bucket
  }

  /** Memory drivers ignore the TTL, so drop our own expired minutes here. */
  function prune(): void {
    const oldest = oldestMinute(now())
    for (const minute of buckets.keys()) {
      if (minute < oldest) {
        buckets.delete(minute)
        dirty.delete(minute)
        if (minute === currentMinute) current = undefined
      }
    }
  }

  function addCount(at: number, field: (typeof counterFields)[number], count: number): void {
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be an integer >= 0, got ${count}`)
    if (count > 0) bucketAt(at)[field] += count
  }

  /** Loads this instance's stored minutes once, so a restart neither loses nor doubles counts. */
  function restore(): Promise<void> {
    restored ??= (async () => {
      const [stored] = await readBuckets([instanceId], oldestMinute(now()))
      for (const [minute, found] of stored ?? []) {
        let bucket = buckets.get(minute)
        if (!bucket) buckets.set(minute, (bucket = emptyBucket()))
        addBucket(bucket, found)
      }
    })().catch((error: unknown) => {
      restored = undefined
      throw error
    })
    return restored
  }

  /** The window's buckets of each instance (minute to bucket), in one `getItems` call. */
  async function readBuckets(ids: readonly string[], oldest: number): Promise<Map<number, Bucket>[]> {
    const found = ids.map(() => new Map<number, Bucket>())
    if (ids.length === 0) return found
    const wanted = new Map<string, { instance: number; minute: number }>()
    for (const [instance, id] of ids.entries()) {
      for (let minute = oldest; minute < oldest + windowMinutes; minute++) {
        wanted.set(bucketKey(id, minute), { instance, minute })
      }
    }
    // unstorage answers with normalised keys (`/` becomes `:`), possibly in another order.
    const byKey = new Map<string, { instance: number; minute: number }>()
    for (const [key, place] of wanted) byKey.set(normalizeKey(key), place)
    for (const { key, value } of await storage.getItems([...wanted.keys()])) {
      const place = byKey.get(normalizeKey(key))
      const bucket = parseBucket(value)
      if (place && bucket) found[place.instance]?.set(place.minute, bucket)
    }
    return found
  }

  async function readRegistry(): Promise<Record<string, number>> {
    const value: unknown = await storage.getItem(registryKey)
    const registry: Record<string, number> = {}
    if (isRecord(value)) {
      for (const [id, lastSeen] of Object.entries(value)) if (typeof lastSeen === 'number') registry[id] = lastSeen
    }
    return registry
  }

  /** Read-modify-write, but only about once a minute; an update lost to a race is redone on the next one. */
  async function register(at: number): Promise<void> {
    const registry = await readRegistry()
    const own = registry[instanceId]
    if (own !== undefined && at - own < REGISTRY_REFRESH_MS) {
      registeredAt = own
      return
    }
    const cutoff = at - windowMinutes * MINUTE - REGISTRY_GRACE_MS
    const next: Record<string, number> = {}
    for (const [id, lastSeen] of Object.entries(registry)) if (lastSeen >= cutoff) next[id] = lastSeen
    next[instanceId] = at
    await storage.setItem(registryKey, next)
    registeredAt = at
  }

  async function writeDirty(): Promise<void> {
    await restore()
    prune()
    if (dirty.size === 0) return
    const at = now()
    if (at - registeredAt >= REGISTRY_REFRESH_MS) await register(at)
    // Serialised before the write, so counts recorded meanwhile mark the minute dirty again.
    const minutes = [...dirty]
    dirty.clear()
    const items = minutes.flatMap((minute) => {
      const bucket = buckets.get(minute)
      return bucket ? [{ key: bucketKey(instanceId, minute), value: serialiseBucket(bucket), options: { ttl } }] : []
    })
    try {
      await storage.setItems(items)
    } catch (error) {
      for (const minute of minutes) if (buckets.has(minute)) dirty.add(minute)
      throw error
    }
  }

  function flush(): Promise<void> {
    // One flush at a time: an older write landing after a newer one would lose counts.
    const run = flushing.then(writeDirty, writeDirty)
    flushing = run.catch(() => {})
    return run
  }

  let timer: ReturnType<typeof setInterval> | undefined
  if (flushIntervalMs > 0) {
    timer = setInterval(() => flush().catch(onError), flushIntervalMs)
    timer.unref()
  }

  async function snapshot(): Promise<StatsSnapshot> {
    await restore()
    const at = now()
    const oldest = oldestMinute(at)
    const registry = await readRegistry()
    const own = registry[instanceId]
    if (own === undefined || at - own >= REGISTRY_REFRESH_MS) registeredAt = Number.NEGATIVE_INFINITY
    const seenSince = oldest * MINUTE - REGISTRY_GRACE_MS
    const others = Object.entries(registry)
      .filter(([id, lastSeen]) => id !== instanceId && lastSeen >= seenSince)
      .map(([id]) => id)
    const theirs = await readBuckets(others, oldest)
    prune()

    const total = emptyBucket()
    const series: StatsSnapshot['series'] = []
    for (let minute = oldest; minute < oldest + windowMinutes; minute++) {
      const sum = emptyBucket()
      const mine = buckets.get(minute)
      if (mine) addBucket(sum, mine)
      for (const found of theirs) {
        const bucket = found.get(minute)
        if (bucket) addBucket(sum, bucket)
      }
      addBucket(total, sum)
      series.push({
        minute: new Date(minute * MINUTE).toISOString(),
        accepted: sum.accepted,
        rejected: sum.rejected,
        duplicates: sum.duplicates,
        byName: Object.fromEntries(sum.byName),
      })
    }

    const lag = total.lag
    return {
      windowMinutes,
      from: new Date(oldest * MINUTE).toISOString(),
      to: new Date(at).toISOString(),
      instances: 1 + others.length,
      totals: { accepted: total.accepted, duplicates: total.duplicates, rejected: total.rejected },
      failures: {
        rejected: total.rejected,
        storage: total.storageFailures,
        forward: total.forwardFailures,
        forwardByKind: Object.fromEntries(total.forwardByKind),
        refusedRequests: total.refused,
        refusedByCode: Object.fromEntries(total.refusedByCode),
      },
      forwarded: total.forwarded,
      byName: Object.fromEntries(total.byName),
      bySource: Object.fromEntries(total.bySource),
      lag: {
        count: lag.count,
        averageMs: wholeMs(mean(lag)),
        p50Ms: wholeMs(quantile(lag, 0.5)),
        p95Ms: wholeMs(quantile(lag, 0.95)),
        p99Ms: wholeMs(quantile(lag, 0.99)),
        maxMs: lag.count === 0 ? null : wholeMs(lag.max),
      },
      futureEvents: total.futureEvents,
      pastEvents: total.pastEvents,
      series,
    }
  }

  return {
    recordAccepted(events, receivedAt, times) {
      if (events.length === 0) return
      const bucket = bucketAt(receivedAt)
      bucket.accepted += events.length
      const { byName, bySource, lag } = bucket
      const timed = times !== undefined && times.length === events.length
      for (let i = 0; i < events.length; i++) {
        const event = events[i]!
        byName.set(event.name, (byName.get(event.name) ?? 0) + 1)
        bySource.set(event.source, (bySource.get(event.source) ?? 0) + 1)
        const known = timed ? times[i]! : Number.NaN
        const ms = receivedAt - (known === known ? known : timeOf(event.occurredAt))
        if (ms > pastToleranceMs) bucket.pastEvents++
        else if (ms >= 0) record(lag, ms)
        else if (ms >= -futureToleranceMs) record(lag, 0)
        else if (ms < 0) bucket.futureEvents++
        // NaN (an unparseable occurredAt) has no lag; validation should have refused it.
      }
    },
    recordRejected(count, receivedAt) {
      addCount(receivedAt, 'rejected', count)
    },
    recordDuplicates(count, receivedAt) {
      addCount(receivedAt, 'duplicates', count)
    },
    recordStorageFailure(events, receivedAt) {
      addCount(receivedAt, 'storageFailures', events)
    },
    recordRefused(code, receivedAt) {
      const bucket = bucketAt(receivedAt)
      bucket.refused++
      bucket.refusedByCode.set(code, (bucket.refusedByCode.get(code) ?? 0) + 1)
    },
    recordForwarded(events, at) {
      addCount(at, 'forwarded', events)
    },
    recordForwardFailure(kind, at) {
      const bucket = bucketAt(at)
      bucket.forwardFailures++
      bucket.forwardByKind.set(kind, (bucket.forwardByKind.get(kind) ?? 0) + 1)
    },
    snapshot,
    flush,
    async close() {
      if (timer) clearInterval(timer)
      timer = undefined
      await flush()
    },
  }
}

/** A `?` would cut the key short and `.`/`..` segments are refused by unstorage. */
function checkKeySegment(option: string, value: string): void {
  if (typeof value !== 'string' || value === '' || value.includes('?') || /(^|[:/\\])\.\.?($|[:/\\])/.test(value)) {
    throw new TypeError(`${option} must be a non-empty string without '?' or '.'/'..' segments, got ${JSON.stringify(value)}`)
  }
}

function emptyBucket(): Bucket {
  return {
    accepted: 0,
    duplicates: 0,
    rejected: 0,
    storageFailures: 0,
    refused: 0,
    forwarded: 0,
    forwardFailures: 0,
    futureEvents: 0,
    pastEvents: 0,
    byName: new Map(),
    bySource: new Map(),
    refusedByCode: new Map(),
    forwardByKind: new Map(),
    lag: createHistogram(),
  }
}

function addBucket(into: Bucket, from: Bucket): void {
  for (const field of counterFields) into[field] += from[field]
  for (const field of mapFields) {
    const map = into[field]
    for (const [key, count] of from[field]) map.set(key, (map.get(key) ?? 0) + count)
  }
  merge(into.lag, from.lag)
}

function serialiseBucket(bucket: Bucket): StoredBucket {
  return {
    v: 1,
    accepted: bucket.accepted,
    duplicates: bucket.duplicates,
    rejected: bucket.rejected,
    storageFailures: bucket.storageFailures,
    refused: bucket.refused,
    forwarded: bucket.forwarded,
    forwardFailures: bucket.forwardFailures,
    futureEvents: bucket.futureEvents,
    pastEvents: bucket.pastEvents,
    byName: Object.fromEntries(bucket.byName),
    bySource: Object.fromEntries(bucket.bySource),
    refusedByCode: Object.fromEntries(bucket.refusedByCode),
    forwardByKind: Object.fromEntries(bucket.forwardByKind),
    lag: { ...bucket.lag, buckets: { ...bucket.lag.buckets } },
  }
}

/** Another instance (or version) wrote it: keep what is well-formed, never throw. */
function parseBucket(value: unknown): Bucket | undefined {
  if (!isRecord(value) || value.v !== 1) return undefined
  const bucket = emptyBucket()
  for (const field of counterFields) bucket[field] = count(value[field])
  for (const field of mapFields) {
    const counts = value[field]
    if (isRecord(counts)) for (const [key, n] of Object.entries(counts)) if (count(n) > 0) bucket[field].set(key, count(n))
  }
  const lag = value.lag
  if (isRecord(lag) && isRecord(lag.buckets)) {
    for (const [index, n] of Object.entries(lag.buckets)) {
      if (/^\d+$/.test(index) && count(n) > 0) bucket.lag.buckets[index] = count(n)
    }
    bucket.lag.count = count(lag.count)
    bucket.lag.sum = typeof lag.sum === 'number' && lag.sum >= 0 ? lag.sum : 0
    bucket.lag.min = typeof lag.min === 'number' && lag.min >= 0 ? lag.min : 0
    bucket.lag.max = typeof lag.max === 'number' && lag.max >= 0 ? lag.max : 0
  }
  return bucket
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : 0
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function wholeMs(value: number | null): number | null {
  return value === null ? null : Math.round(value)
}

/** The time of an `occurredAt`: the canonical form read by hand, anything else by `Date.parse`. */
function timeOf(iso: string): number {
  const time = canonicalTime(iso)
  return time === time ? time : Date.parse(iso)
}
