import { normalizeKey, type Storage } from 'unstorage'
import { addBucket, emptyBucket, MINUTE, parseBucket, type Bucket } from './bucket'
import { acceptedCountKey } from '../storage/layout'
import { mean, quantile } from './histogram'

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
  /** Accepted events per publishable key, by the key's public `id` (never the key). */
  byKey: Record<string, number>
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
  /**
   * Clock-skew correction: batches whose send time put the producer's clock off by more than the
   * tolerance (their events' lag is counted from the corrected time), batches whose send time was
   * ignored (not a timestamp, beyond `maxMs`, or before an event of the batch occurred), and the
   * size of the corrections (absolute, whole ms).
   */
  clockSkew: { corrected: number; ignored: number; p50Ms: number | null; p95Ms: number | null; maxMs: number | null }
  /** PII redaction: stored events with a field redacted, and the fields dropped, masked and hashed. */
  redacted: { events: number; dropped: number; masked: number; hashed: number }
  /**
   * Rate limits (the `rateLimits` option): requests refused with 429, by limit, and checks the
   * shared store (Redis) could not answer, which each instance then counted in its own memory.
   */
  rateLimits: { refused: number; byLimit: Record<string, number>; storeErrors: number }
  /** One entry per minute of the window, oldest first, zero-filled. */
  series: { minute: string; accepted: number; rejected: number; duplicates: number; byName: Record<string, number> }[]
}

/** Where the buckets of every instance are kept, and how many minutes the window holds. */
export interface BucketPlace {
  storage: Storage
  prefix: string
  windowMinutes: number
}

/** The storage key of one instance's bucket of one minute. */
export function bucketKey(place: BucketPlace, id: string, minute: number): string {
  return `${place.prefix}:b:${id}:${minute}`
}

/** The window's buckets of each instance (minute to bucket), in one `getItems` call. */
export async function readBuckets(place: BucketPlace, ids: readonly string[], oldest: number): Promise<Map<number, Bucket>[]> {
  const found = ids.map(() => new Map<number, Bucket>())
  if (ids.length === 0) return found
  const wanted = new Map<string, { instance: number; minute: number }>()
  for (const [instance, id] of ids.entries()) {
    for (let minute = oldest; minute < oldest + place.windowMinutes; minute++) {
      wanted.set(bucketKey(place, id, minute), { instance, minute })
    }
  }
  // unstorage answers with normalised keys (`/` becomes `:`), possibly in another order.
  const byKey = new Map<string, { instance: number; minute: number }>()
  for (const [key, where] of wanted) byKey.set(normalizeKey(key), where)
  for (const { key, value } of await place.storage.getItems([...wanted.keys()])) {
    const where = byKey.get(normalizeKey(key))
    const bucket = parseBucket(value)
    if (where && bucket) found[where.instance]?.set(where.minute, bucket)
  }
  return found
}

/**
 * Sums the buckets of every instance (each a map of minute to bucket) over the window that starts
 * at minute `oldest`, into the snapshot taken at `at`.
 */
export function summarise(windowMinutes: number, oldest: number, at: number, instances: readonly ReadonlyMap<number, Bucket>[]): StatsSnapshot {
  const total = emptyBucket()
  const series: StatsSnapshot['series'] = []
  for (let minute = oldest; minute < oldest + windowMinutes; minute++) {
    const sum = emptyBucket()
    for (const buckets of instances) {
      const bucket = buckets.get(minute)
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
    instances: instances.length,
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
    byKey: Object.fromEntries(total.byKey),
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
    clockSkew: {
      corrected: total.skewCorrected,
      ignored: total.skewIgnored,
      p50Ms: wholeMs(quantile(total.skew, 0.5)),
      p95Ms: wholeMs(quantile(total.skew, 0.95)),
      maxMs: total.skew.count === 0 ? null : wholeMs(total.skew.max),
    },
    redacted: { events: total.redactedEvents, dropped: total.redactedDropped, masked: total.redactedMasked, hashed: total.redactedHashed },
    rateLimits: {
      refused: [...total.rateLimitedBy.values()].reduce((sum, n) => sum + n, 0),
      byLimit: Object.fromEntries(total.rateLimitedBy),
      storeErrors: total.rateLimitStoreErrors,
    },
    series,
  }
}

function wholeMs(value: number | null): number | null {
  return value === null ? null : Math.round(value)
}

/**
 * The exact counts of stored events of each minute of the window, from the minute counters the
 * batch write increments (see `acceptedCountKey`), in one `getItems` call: index 0 is `oldest`.
 */
export async function readExactAccepted(place: BucketPlace, oldest: number): Promise<number[]> {
  const keys = Array.from({ length: place.windowMinutes }, (_, i) => acceptedCountKey(place.prefix, oldest + i))
  const byKey = new Map<string, number>()
  for (const { key, value } of await place.storage.getItems(keys)) {
    const count = Number(value)
    if (Number.isSafeInteger(count) && count > 0) byKey.set(normalizeKey(key), count)
  }
  return keys.map((key) => byKey.get(normalizeKey(key)) ?? 0)
}

/** The snapshot with its accepted counts (totals and series) taken from the exact minute counts. */
export function withExactAccepted(snapshot: StatsSnapshot, counts: readonly number[]): StatsSnapshot {
  const series = snapshot.series.map((minute, i) => ({ ...minute, accepted: counts[i] ?? 0 }))
  const accepted = series.reduce((sum, minute) => sum + minute.accepted, 0)
  return { ...snapshot, totals: { ...snapshot.totals, accepted }, series }
}
