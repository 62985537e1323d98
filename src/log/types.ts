import type { Storage } from 'unstorage'
import type { EventEnvelope } from '../model/model'
import type { AtomicBatchStore } from '../storage/atomic'
import type { ReceivedBody } from '../model/received'

/** An event as stored: the normalised envelope plus when it was received. */
export type StoredEvent<E extends EventEnvelope = EventEnvelope> = E & {
  /** When the batch carrying it was accepted (ISO, UTC). */
  receivedAt: string
  /**
   * `occurredAt` corrected for the producer's clock skew (ISO, UTC): present when the batch's
   * send time put the producer's clock off by more than the tolerance. `occurredAt` stays as sent.
   */
  correctedOccurredAt?: string
  /** The skew corrected, `receivedAt - sentAt` in ms (positive: the producer's clock was behind). */
  clockSkewMs?: number
}

/** Options of {@link createEventLog}. */
export interface EventLogOptions {
  /** Where batches and dedupe claims live. */
  storage: Storage
  /**
   * Key prefix inside the storage.
   * @default 'events'
   */
  prefix?: string
  /**
   * How long an id is remembered for deduplication, in ms. Keep retention at least this long.
   * @default 86_400_000 (24 h)
   */
  dedupeWindowMs?: number
  /**
   * Longest a storage operation may take before the request fails with 503, in ms (a batch write
   * that times out is waited for once more; see `append`).
   * @default 5000
   */
  timeoutMs?: number
  /** This process's id; part of every batch key, so instances never write the same key. */
  instanceId: string
  /** @default Date.now */
  now?: () => number
  /**
   * Write an outbox entry with every batch, in the same acknowledged step, for the forwarder.
   * @default false
   */
  outbox?: boolean
  /**
   * Told of a batch whose writes landed whole only after its request had answered 503: it is
   * stored (a retry is told its events are duplicates), so it is counted and forwarded too.
   * `events` are those appended; `result.duplicateIndexes` says which of them were not stored.
   */
  onLateWrite?: (result: AppendResult & { batchKey: string }, events: readonly EventEnvelope[], receivedAt: number) => void
  /**
   * Told of the outbox entry of a batch found not stored after its request answered 503. The entry
   * stays (the record may still land, on a driver whose writes can outlive their failure), for the
   * forwarder to drop once 4 storage timeouts have passed, or to forward if the record is there.
   */
  onUnstored?: (outboxKey: string, entry: OutboxEntry) => void
  /** Told of failures of that background work (see `close`), and once when `maxEvents` is first reached. */
  onError?: (error: unknown) => void
  /**
   * On a memory storage: most events kept from the batches this log stored. Past it, the oldest
   * batches are dropped, with their outbox entries and their ids' dedupe claims (sent again, those
   * ids are stored again), and counted in `dropped`. Ignored on other storages.
   * @default Infinity
   */
  maxEvents?: number
  /**
   * On a memory storage: most bytes of stored batches kept, dropped as for `maxEvents`.
   * @default Infinity
   */
  maxBytes?: number
  /**
   * A one-step batch write of the host's own (a SQL transaction, a Redis script), used in place
   * of the strategy the log would choose for `storage`. The log still reads records, outbox entries
   * and claims back through `storage` (listing, `get`, pruning, forwarding): the store writes the
   * record at `batchKey`, the outbox entry at `outbox.key` and each new id's claim at
   * `claimKey('<prefix>:d', id)`, where `storage` reads them.
   */
  store?: AtomicBatchStore
  /**
   * Exact counts of stored events: the minute counters at `acceptedCountKey(prefix, minute)`
   * (src/storage/layout.ts), living `ttlMs`, incremented in the batch write by a store that can
   * (Redis; see `countsAccepted`).
   */
  counts?: { prefix: string; ttlMs: number }
}

/** What the outbox holds for one stored batch: delivery state lives with the forwarder. */
export interface OutboxEntry {
  /** Storage key of the batch record to forward. */
  batch: string
  /** Events in the batch. */
  events: number
  /** When the batch was accepted (ms). */
  receivedAt: number
}

/** The outcome of appending a batch. */
export interface AppendResult {
  /** Events written now. */
  stored: number
  /** Positions (in the appended array) of events whose id was already stored or was repeated in the batch. */
  duplicateIndexes: number[]
  /** Storage key of the batch record, when one was written. */
  batchKey?: string
  /** Storage key of the outbox entry, when the log keeps an outbox. */
  outboxKey?: string
}

/** A query over stored events; newest first. */
export interface EventQuery {
  name?: string
  source?: string
  /** Received at or after (ms since epoch or a Date). @default 7 days before `until` */
  since?: number | Date
  /** Received before (ms or Date). @default now */
  until?: number | Date
  /** Page size. @default 100 (at most 1000) */
  limit?: number
  /** `nextCursor` of the previous page. */
  cursor?: string
}

/** One page of stored events. */
export interface EventPage<E extends EventEnvelope = EventEnvelope> {
  events: StoredEvent<E>[]
  /** Pass as `cursor` for the next page; null when there is none. */
  nextCursor: string | null
}

/**
 * The event log on unstorage: append-only batch records partitioned by hour, plus one dedupe claim
 * per id. An append is durable (written) before it resolves, and the same id is stored once within
 * the dedupe window, across restarts and across instances sharing storage.
 */
export interface EventLog {
  /**
   * Stores a batch. `raw`, when given, is the JSON text of exactly `events` as received, kept as is
   * if all of them are stored.
   */
  append(events: readonly EventEnvelope[], receivedAt: number, raw?: RawBatch, skewMs?: number): Promise<AppendResult>
  /**
   * {@link EventLog.append}, answering at once where the storage allows it: on the memory driver
   * the result (or the error, thrown) comes back from the call itself, with nothing awaited;
   * elsewhere a promise.
   */
  appendNow(events: readonly EventEnvelope[], receivedAt: number, raw?: RawBatch, skewMs?: number): AppendResult | Promise<AppendResult>
  list(query?: EventQuery): Promise<EventPage>
  /** Reads one stored event by id (within the dedupe window). */
  get(id: string): Promise<StoredEvent | null>
  /** The batch records received in `[since, until)` (ms), oldest first, touching only the hours in range. */
  batches(since: number, until: number): AsyncIterable<{ key: string; record: BatchRecord }>
  /**
   * Deletes batches received before `olderThan` (keeping those still waiting to be forwarded),
   * touching only the hour buckets it needs, and dedupe claims past the window.
   */
  prune(options: PruneOptions): Promise<{ batches: number; claims: number }>
  /** Batch records found unreadable (a torn write); they are skipped, never served. */
  readonly corruptRecords: number
  /** Whether claims are atomic on this driver (true for memory, fs and Redis). */
  readonly atomicDedupe: boolean
  /** Whether the batch write counts the events it stores in the `counts` minute counters. */
  readonly countsAccepted: boolean
  /** Batches and events a memory storage dropped to stay within `maxEvents` and `maxBytes` (zeros elsewhere). */
  readonly dropped: { batches: number; events: number }
  /** What a bounded memory storage holds now: batches, events and bytes of batches (zeros elsewhere). */
  readonly kept: { batches: number; events: number; bytes: number }
  /**
   * Stops the background work on batches whose requests answered 503 with their writes sent
   * (finding out whether the record landed, writing its outbox entry): each makes one last attempt
   * now, waited for at most twice the storage timeout. An outbox entry left unwritten then is the
   * only way such a batch misses forwarding.
   */
  close(): Promise<void>
}

/** Options of {@link EventLog.prune}. */
export interface PruneOptions {
  /** Batches received before this time (ms since epoch, or a Date) are deleted. */
  olderThan: number | Date
  /** Stops the prune between two storage calls; it then resolves with what it deleted so far. */
  signal?: AbortSignal
}

/**
 * A batch's JSON text as received (the array of its events), with its UTF-8 bytes when the body
 * was read from bytes: what parsing produced ({@link ReceivedBody}), handed to the log unchanged.
 * `owned`: nothing else holds `bytes` or will change them (the body of a Node request), so a
 * memory storage may keep them without a copy.
 */
export type RawBatch = Pick<ReceivedBody, 'text'> & Partial<Pick<ReceivedBody, 'bytes' | 'owned'>>

/** A batch record as read back (see parseRecord). */
export interface BatchRecord {
  v: 1
  receivedAt: number
  instance: string
  /**
   * The producer's clock skew corrected for the whole batch (`receivedAt - sentAt`, ms), when past
   * the tolerance: each event's corrected time is its `occurredAt` plus this.
   */
  skewMs?: number
  events: EventEnvelope[]
}
