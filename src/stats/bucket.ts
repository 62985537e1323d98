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
  'skewCorrected',
  'skewIgnored',
  'redactedEvents',
  'redactedDropped',
  'redactedMasked',
  'redactedHashed',
  'rateLimitStoreErrors',
] as const
const mapFields = ['byName', 'bySource', 'byKey', 'refusedByCode', 'forwardByKind', 'rateLimitedBy'] as const

/** A plain count of a bucket (not one of its maps). */
export type CounterField = (typeof counterFields)[number]
type Counters = Record<CounterField, number>
type MapField = (typeof mapFields)[number]

/** One minute of one instance, in memory. */
export type Bucket = Counters & Record<MapField, Map<string, number>> & { lag: Histogram; skew: Histogram }

/** One minute of one instance, as stored. */
export type StoredBucket = { v: 1 } & Counters & Record<MapField, Record<string, number>> & { lag: Histogram; skew: Histogram }

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
    skewCorrected: 0,
    skewIgnored: 0,
    redactedEvents: 0,
    redactedDropped: 0,
    redactedMasked: 0,
    redactedHashed: 0,
    rateLimitStoreErrors: 0,
    byName: new Map(),
    bySource: new Map(),
    byKey: new Map(),
    refusedByCode: new Map(),
    forwardByKind: new Map(),
    rateLimitedBy: new Map(),
    lag: createHistogram(),
    skew: createHistogram(),
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
  merge(into.skew, from.skew)
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
    skewCorrected: bucket.skewCorrected,
    skewIgnored: bucket.skewIgnored,
    redactedEvents: bucket.redactedEvents,
    redactedDropped: bucket.redactedDropped,
    redactedMasked: bucket.redactedMasked,
    redactedHashed: bucket.redactedHashed,
    rateLimitStoreErrors: bucket.rateLimitStoreErrors,
    byName: Object.fromEntries(bucket.byName),
    bySource: Object.fromEntries(bucket.bySource),
    byKey: Object.fromEntries(bucket.byKey),
    refusedByCode: Object.fromEntries(bucket.refusedByCode),
    forwardByKind: Object.fromEntries(bucket.forwardByKind),
    rateLimitedBy: Object.fromEntries(bucket.rateLimitedBy),
    lag: { ...bucket.lag, buckets: { ...bucket.lag.buckets } },
    skew: { ...bucket.skew, buckets: { ...bucket.skew.buckets } },
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
  parseHistogram(value.lag, bucket.lag)
  // Written only by versions that correct clock skew: absent, it stays empty.
  parseHistogram(value.skew, bucket.skew)
  return bucket
}

function parseHistogram(value: unknown, into: Histogram): void {
  if (!isRecord(value) || !isRecord(value.buckets)) return
  for (const [index, n] of Object.entries(value.buckets)) {
    if (/^\d+$/.test(index) && count(n) > 0) into.buckets[index] = count(n)
  }
  into.count = count(value.count)
  into.sum = typeof value.sum === 'number' && value.sum >= 0 ? value.sum : 0
  into.min = typeof value.min === 'number' && value.min >= 0 ? value.min : 0
  into.max = typeof value.max === 'number' && value.max >= 0 ? value.max : 0
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : 0
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
