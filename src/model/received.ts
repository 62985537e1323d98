/**
 * A batch body as it was received: its text, its bytes and what parsing learned about it. Made once
 * by `parseBatchBytes`, read by validation (which skips the checks parsing already made) and, when
 * every event was valid and is stored exactly as sent, handed to the event log as is, which may
 * keep the text or the bytes instead of serialising the events again.
 *
 * @example
 * const body = parseBatchBytes(bytes, model.limits.maxDepth, model.limits.maxEventBytes)
 * await ingest.ingest(body.value, { hints: body })
 */
export interface ReceivedBody {
  /** The parsed JSON value (an array when parsing succeeded). */
  value: unknown
  /** The body as text: the JSON of the whole array. */
  text: string
  /** The UTF-8 of `text`: the body as given, without a leading byte order mark. */
  bytes: Uint8Array
  /**
   * Nothing else holds `bytes` or will change them (the body of a Node request), so a store may
   * keep them without a copy.
   */
  owned: boolean
  /** Byte size of each top-level element, as sent; empty when they were not measured (see `sizeBound`). */
  sizes: number[]
  /** No element is larger than this many bytes (the body less its brackets when `sizes` is empty). */
  sizeBound: number
  /**
   * True when no object of the body has a key named `__proto__` or `constructor` (and its depth was
   * checked), so validation need not walk the events for them.
   */
  protoFree: boolean
}

/** @deprecated The same as {@link ReceivedBody}: what `parseBatchBytes` returns. */
export type ParsedBody = ReceivedBody

/** @deprecated The same as {@link ReceivedBody}: what `validateBatch` takes after the input. */
export type BatchHints = ReceivedBody
