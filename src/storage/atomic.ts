/**
 * The one-step batch write: what a backend that can store a batch atomically implements (a Redis
 * script, the memory driver's synchronous step, a PostgreSQL transaction, a host's own store).
 *
 * One call stores the batch's new events or nothing: each id not claimed yet gets `claim` (its
 * dedupe claim, living `windowMs`), the record of exactly those events is written under
 * `batchKey`, and so is the outbox entry when the log keeps one. A claim never exists without its
 * record, so there is nothing to take over after a crash, and no request ever waits for another.
 */
export interface AtomicBatch {
  /** The event ids, by position; each id once (repeats within the batch are removed before). */
  readonly ids: readonly string[]
  /** The value each new id's claim holds: `<batchKey>|<claimed at, ms>`. */
  readonly claim: string
  /** When the claim was taken (ms): the time `claim` names. */
  readonly claimedAt: number
  /** How long an id's claim lives, in ms (the dedupe window). */
  readonly windowMs: number
  /** Storage key of the batch record. */
  readonly batchKey: string
  /** The record of the events at `positions` (into `ids`); of all of them when undefined. */
  record(positions?: readonly number[]): string | Uint8Array
  /** The outbox entry to write beside the record, when the log keeps an outbox. */
  readonly outbox?: { readonly key: string; entry(stored: number): string }
  /**
   * The counter of events stored in the batch's minute, for a store that {@link AtomicBatchStore.countsAccepted counts}:
   * incremented by the number of events stored, in the same step, living `ttlMs`.
   */
  readonly counts?: { readonly key: string; readonly ttlMs: number }
}

/** What one atomic write did. */
export interface AtomicResult {
  /** Positions (into `ids`) whose id another batch holds: not stored by this one. */
  duplicates: number[]
}

/** A backend that stores a batch in one atomic step (see {@link AtomicBatch}). */
export interface AtomicBatchStore {
  /**
   * Stores the batch's new events, their claims and outbox entry, all or nothing. A store that
   * answers synchronously (memory) returns the result itself; others a promise. A rejection
   * means the outcome is unknown: the write may still have happened, whole.
   */
  append(batch: AtomicBatch): AtomicResult | Promise<AtomicResult>
  /**
   * Whether the store increments `batch.counts` in its batch write: then the number of events
   * stored is counted exactly, whatever happens to the instance that wrote them.
   */
  readonly countsAccepted?: boolean
}
