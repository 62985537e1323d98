import { createHistogram, merge, type Histogram } from './histogram'

// One minute of one instance's counts: in memory, as stored, and summed.

export const MINUTE = 60_000

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

/** A plain count of a bucket (not one of its maps). */
export type CounterField = (typeof counterFields)[number]
type Counters = Record<CounterField, number>
type MapField = (typeof mapFields)[number]

/** One minute of one instance, in memory. */
export type Bucket = Counters & Record<MapField, Map<string, number>> & { lag: Histogram }

/** One minute of one instance, as stored. */
export type StoredBucket = { v: 1 } & Counters & Record<MapField, Record<string, number>> & { lag: Histogram }

/** A bucket with every count at zero. */
export function emptyBucket(): Bucket {
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

/** Adds every count of `from` (an instance's minute, or a sum of them) into `into`. */
export function addBucket(into: Bucket, from: Bucket): void {
  for (const field of counterFields) into[field] += from[field]
  for (const field of mapFields) {
    const map = into[field]
    for (const [key, count] of from[field]) map.set(key, (map.get(key) ?? 0) + count)
  }
  merge(into.lag, from.lag)
}

/** Adds one to `key` of a bucket's map. */
export function addTo(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}

/** The bucket as stored: plain objects, versioned. */
export function serialiseBucket(bucket: Bucket): StoredBucket {
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
export function parseBucket(value: unknown): Bucket | undefined {
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
