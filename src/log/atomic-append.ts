import { IngestError } from '../base/errors'
import { withTimeout } from '../base/timeout'
import type { EventEnvelope } from '../model/model'
import { acceptedCountKey, hourBucket } from '../storage/layout'
import type { AtomicBatch, AtomicBatchStore, AtomicResult } from '../storage/atomic'
import type { BatchKeys, BatchNames } from './batch-keys'
import type { HourIndex } from './hours'
import { recordBytes, recordText, type RecordReader } from './record'
import type { LateSettling } from './settle'
import type { AppendResult, OutboxEntry, RawBatch } from './types'

/** What the one-step path needs of the log. */
export interface AtomicAppendContext {
  store: AtomicBatchStore
  instanceId: string
  windowMs: number
  timeoutMs: number
  keys: BatchKeys
  hours: HourIndex
  records: RecordReader
  settling: LateSettling
  /** The store keeps a record's bytes as given (the memory driver). */
  keepsBytes: boolean
  /** The minute counters the store increments (see EventLogOptions.counts). */
  counts?: { prefix: string; ttlMs: number }
}

/** A batch ready for the store: each id once, and where in the batch each came from. */
interface Prepared extends BatchNames {
  readonly events: readonly EventEnvelope[]
  readonly receivedAt: number
  readonly raw?: RawBatch
  /** The clock skew corrected for the batch, kept in its record. */
  readonly skewMs?: number
  /** The distinct ids, in order of first appearance. */
  readonly ids: string[]
  /** The batch position of each of `ids`. */
  readonly positions: number[]
  /** Batch positions repeating an id at an earlier position: duplicates of it. */
  readonly repeats: number[]
}

/**
 * The log's side of a one-step batch write (see AtomicBatch): repeats within the batch removed
 * (the later places are duplicates), the store called once, its duplicates mapped back to batch
 * positions. No claims of the log's own, no `in_progress`, no waiting between requests. A store
 * that answers synchronously (memory) gets its answer back synchronously, with nothing awaited.
 *
 * A store call that rejects or times out leaves the outcome unknown: the request answers 503
 * `storage_unavailable`, and late settling finds out whether the record landed (then the batch is
 * reported through `onLateWrite`, counted and forwarded) or not (then nothing was stored).
 */
export class AtomicAppend {
  constructor(private readonly context: AtomicAppendContext) {}

  append(events: readonly EventEnvelope[], receivedAt: number, raw?: RawBatch, skewMs?: number): AppendResult | Promise<AppendResult> {
    if (events.length === 0) return { stored: 0, duplicateIndexes: [] }
    const prepared = this.prepare(events, receivedAt, raw, skewMs)
    // The hour is indexed before the record is written: listing and pruning find records through it.
    const indexed = this.context.hours.ensure(hourBucket(receivedAt))
    if (indexed) return indexed.then(() => this.store(prepared), (error: unknown) => this.failed(error))
    return this.store(prepared)
  }

  private prepare(events: readonly EventEnvelope[], receivedAt: number, raw: RawBatch | undefined, skewMs: number | undefined): Prepared {
    const ids: string[] = []
    const positions: number[] = []
    const repeats: number[] = []
    // A short batch is searched in place; a Set pays for itself past a few dozen ids.
    const seen = events.length > 16 ? new Set<string>() : undefined
    for (let p = 0; p < events.length; p++) {
      const id = events[p]!.id
      if (seen ? seen.has(id) : ids.includes(id)) repeats.push(p)
      else {
        seen?.add(id)
        ids.push(id)
        positions.push(p)
      }
    }
    const names = this.context.keys.next(receivedAt)
    return { seq: names.seq, batchKey: names.batchKey, claim: names.claim, claimedAt: names.claimedAt, outboxKey: names.outboxKey, events, receivedAt, raw, skewMs, ids, positions, repeats }
  }

  /** The batch as the store sees it. */
  private batchOf(prepared: Prepared): AtomicBatch {
    const { events, receivedAt, raw, skewMs, batchKey, outboxKey } = prepared
    const { instanceId, keepsBytes, counts } = this.context
    return {
      ids: prepared.ids,
      claim: prepared.claim,
      claimedAt: prepared.claimedAt,
      windowMs: this.context.windowMs,
      batchKey,
      record(stored) {
        // As received when every event is new and none repeats: no second serialisation.
        const asSent = stored === undefined && prepared.repeats.length === 0
        const at = asSent ? undefined : (stored ?? prepared.ids.map((_, j) => j)).map((j) => prepared.positions[j]!)
        const bytes = keepsBytes ? recordBytes(receivedAt, raw, at, skewMs) : undefined
        return bytes ?? recordText(receivedAt, instanceId, asSent ? raw : undefined, events, at, skewMs)
      },
      outbox: outboxKey === undefined ? undefined : { key: outboxKey, entry: (count) => JSON.stringify({ batch: batchKey, events: count, receivedAt } satisfies OutboxEntry) },
      counts: counts && { key: acceptedCountKey(counts.prefix, Math.floor(receivedAt / 60_000)), ttlMs: counts.ttlMs },
    }
  }

  private store(prepared: Prepared): AppendResult | Promise<AppendResult> {
    let answer: AtomicResult | Promise<AtomicResult>
    try {
      answer = this.context.store.append(this.batchOf(prepared))
    } catch (error) {
      return this.unknown(prepared, error)
    }
    if (!isPromiseLike(answer)) return this.result(prepared, answer)
    const answered = Promise.resolve(answer)
    return withTimeout(answered, this.context.timeoutMs, 'write').then(
      (result) => this.result(prepared, result),
      (error: unknown) => this.unknown(prepared, error, answered.then((result) => this.result(prepared, result))),
    )
  }

  /** The store's answer in batch positions. */
  private result(prepared: Prepared, answer: AtomicResult): AppendResult {
    const duplicateIndexes = prepared.repeats.length === 0 && answer.duplicates.length === 0
      ? []
      : [...prepared.repeats, ...answer.duplicates.map((j) => prepared.positions[j]!)].sort((a, b) => a - b)
    const stored = prepared.events.length - duplicateIndexes.length
    if (stored === 0) return { stored: 0, duplicateIndexes }
    return { stored, duplicateIndexes, batchKey: prepared.batchKey, outboxKey: prepared.outboxKey }
  }

  /** The outcome is unknown: 503 now, and late settling finds out. */
  private unknown(prepared: Prepared, error: unknown, answered?: Promise<AppendResult>): never {
    const { batchKey, outboxKey, events, receivedAt } = prepared
    const guess: AppendResult & { batchKey: string } = { stored: prepared.ids.length, duplicateIndexes: prepared.repeats, batchKey, outboxKey }
    this.context.settling.settleOneStep({ result: guess, events, receivedAt, outboxKey }, (key) => this.storedIn(prepared, key), answered)
    return this.failed(error)
  }

  /** What the record at `key` says was stored of the batch: the events whose ids it holds. */
  private async storedIn(prepared: Prepared, key: string): Promise<AppendResult | undefined> {
    const record = await this.context.records.read(key)
    if (!record) return undefined
    const held = new Set(record.events.map((event) => event.id))
    const duplicates = new Set(prepared.repeats)
    prepared.ids.forEach((id, j) => {
      if (!held.has(id)) duplicates.add(prepared.positions[j]!)
    })
    const duplicateIndexes = [...duplicates].sort((a, b) => a - b)
    return { stored: prepared.events.length - duplicateIndexes.length, duplicateIndexes, batchKey: key, outboxKey: prepared.outboxKey }
  }

  private failed(error: unknown): never {
    // The storage may have lost data meanwhile (a Redis restarted empty): check the hour index again.
    this.context.hours.forget()
    if (error instanceof IngestError) throw error
    throw new IngestError('storage_unavailable', `storage is unavailable: ${(error as Error)?.message ?? String(error)}`, undefined, { cause: error })
  }
}

function isPromiseLike<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}
