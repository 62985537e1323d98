/** Ratio between the upper bounds of consecutive buckets. */
const GROWTH = 1.02
const LOG_GROWTH = Math.log(GROWTH)

/**
 * A mergeable, sparse, log-linear histogram of non-negative values (milliseconds of lag, typically).
 *
 * Bucket `i` holds the values `v` with `GROWTH^(i-1) < v + 1 <= GROWTH^i` (`GROWTH` = 1.02), so
 * `0` has a bucket of its own and a bucket is 2% wide. `quantile` answers with a value within
 * **1% of `v + 1`** of the exact value `v` at that rank (at most 0.5 ms off below 50 ms); the
 * smallest and largest ranks are answered exactly.
 * `count`, `sum`, `min` and `max` are tracked exactly, so the average is exact.
 *
 * It is a plain object: `JSON.stringify` it to store it, and merge two by adding counts
 * ({@link merge}). About 700 buckets cover 0 ms to 10 minutes; only the ones used are present.
 *
 * @example
 * const h = createHistogram()
 * record(h, 120)
 * quantile(h, 0.95) // 120 (within 1%)
 */
export interface Histogram {
  /** How many values were recorded. */
  count: number
  /** Their exact sum. */
  sum: number
  /** The smallest value recorded; `0` while empty. */
  min: number
  /** The largest value recorded; `0` while empty. */
  max: number
  /** Bucket index (as a string, since it is an object key) to count; absent buckets are empty. */
  buckets: Record<string, number>
}

/**
 * The relative precision of {@link quantile}: the answer for an exact value `v` is within
 * `QUANTILE_PRECISION * (v + 1)` of it.
 */
export const QUANTILE_PRECISION = 0.01

/**
 * Creates an empty histogram.
 *
 * @example
 * const lag = createHistogram()
 */
export function createHistogram(): Histogram {
  return { count: 0, sum: 0, min: 0, max: 0, buckets: {} }
}

/** The bucket index of a non-negative value. */
export function bucketIndex(value: number): number {
  return Math.ceil(Math.log(value + 1) / LOG_GROWTH)
}

/**
 * Records one value. Throws a `RangeError` for a negative, `NaN` or infinite value.
 *
 * @example
 * record(lag, receivedAt - Date.parse(event.occurredAt))
 */
export function record(h: Histogram, value: number): void {
  if (!(value >= 0 && value < Infinity)) throw new RangeError(`histogram values must be finite and >= 0, got ${value}`)
  const index = bucketIndex(value)
  h.buckets[index] = (h.buckets[index] ?? 0) + 1
  if (h.count === 0 || value < h.min) h.min = value
  if (value > h.max) h.max = value
  h.count++
  h.sum += value
}

/**
 * Adds the counts of `from` to `into` and returns `into`. Merging the parts of a data set in any
 * order gives the histogram of the whole.
 *
 * @example
 * const hour = createHistogram()
 * for (const minute of minutes) merge(hour, minute.lag)
 */
export function merge(into: Histogram, from: Readonly<Histogram>): Histogram {
  if (from.count === 0) return into
  for (const index in from.buckets) into.buckets[index] = (into.buckets[index] ?? 0) + (from.buckets[index] ?? 0)
  into.min = into.count === 0 ? from.min : Math.min(into.min, from.min)
  into.max = into.count === 0 ? from.max : Math.max(into.max, from.max)
  into.count += from.count
  into.sum += from.sum
  return into
}

/**
 * The value at quantile `q` (0 to 1) by the nearest-rank definition: the `ceil(q * count)`-th
 * smallest value (the smallest for `q = 0`). The answer is within 1% of `v + 1` of the exact `v`
 * ({@link QUANTILE_PRECISION}). `null` while the histogram is empty.
 *
 * @example
 * quantile(lag, 0.99)
 */
export function quantile(h: Readonly<Histogram>, q: number): number | null {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be between 0 and 1, got ${q}`)
  if (h.count === 0) return null
  const rank = Math.max(1, Math.ceil(q * h.count))
  if (rank === 1) return h.min
  if (rank === h.count) return h.max
  const indexes = Object.keys(h.buckets)
    .map(Number)
    .sort((a, b) => a - b)
  let seen = 0
  for (const index of indexes) {
    seen += h.buckets[index] ?? 0
    if (seen >= rank) return Math.min(h.max, Math.max(h.min, representative(index)))
  }
  return h.max
}

/**
 * The average of the recorded values, exact; `null` while empty.
 *
 * @example
 * mean(lag)
 */
export function mean(h: Readonly<Histogram>): number | null {
  return h.count === 0 ? null : h.sum / h.count
}

/**
 * The harmonic mean of a bucket's bounds (in `v + 1` space) is at most (GROWTH - 1) / (GROWTH + 1),
 * just under 1%, from any point of the bucket.
 */
function representative(index: number): number {
  if (index <= 0) return 0
  const upper = GROWTH ** index
  const lower = upper / GROWTH
  return (2 * lower * upper) / (lower + upper) - 1
}
