/** Every size and count limit. All are options; the defaults suit most hosts. */
export interface Limits {
  /**
   * Largest request body in bytes, enforced while reading (before it is buffered whole). A body
   * sent with a `Content-Encoding` is held to it twice: as sent, and as decoded.
   * @default 1_048_576 (1 MiB)
   */
  maxBodyBytes: number
  /**
   * Most times larger than its encoded form a body sent with a `Content-Encoding` (gzip, deflate,
   * br) may decode to; decoding stops as soon as it is over. Event batches compress 15-50 times
   * with gzip and up to about 100 with br (a thousand near-identical events); a decompression bomb,
   * a thousand times and more.
   * @default 200
   */
  maxInflateRatio: number
  /**
   * Largest single event in bytes, as serialised JSON.
   * @default 32_768 (32 KiB)
   */
  maxEventBytes: number
  /**
   * Most events in one batch.
   * @default 1000
   */
  maxEvents: number
  /**
   * Deepest JSON nesting of a body; the outer array counts as 1, an event object as 2.
   * @default 32
   */
  maxDepth: number
  /**
   * Longest `id`, in characters.
   * @default 128
   */
  maxIdLength: number
  /**
   * Longest `companyId` and `subjectId`, in characters.
   * @default 128
   */
  maxRefLength: number
}

/** The default limits. */
export const defaultLimits: Readonly<Limits> = Object.freeze({
  maxBodyBytes: 1_048_576,
  maxInflateRatio: 200,
  maxEventBytes: 32_768,
  maxEvents: 1000,
  maxDepth: 32,
  maxIdLength: 128,
  maxRefLength: 128,
})

/** Merges partial limits over the defaults, rejecting values that are not positive integers. */
export function resolveLimits(limits: Partial<Limits> = {}): Limits {
  const resolved = { ...defaultLimits }
  for (const [key, value] of Object.entries(limits) as [keyof Limits, number | undefined][]) {
    if (value === undefined) continue
    if (!(key in defaultLimits)) throw new TypeError(`[event-ingest] unknown limit "${key}"`)
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new TypeError(`[event-ingest] limits.${key} must be a positive integer, got ${String(value)}`)
    }
    resolved[key] = value
  }
  if (resolved.maxDepth < 2) throw new TypeError('[event-ingest] limits.maxDepth must be at least 2 (the array and its events)')
  return resolved
}
