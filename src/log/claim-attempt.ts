import type { Storage } from 'unstorage'
import type { IdClaims } from '../storage/claims'
import type { EventEnvelope } from '../model/model'
import type { BatchKeys, BatchNames } from './batch-keys'
import type { Flight } from './flights'
import type { HourIndex } from './hours'
import type { ProcessOwners } from './owners'
import type { RecordReader } from './record'
import type { LateSettling } from './settle'
import type { AppendResult, EventLogOptions, OutboxEntry, RawBatch } from './types'

/**
 * A claim is stale, and taken over when its batch is not stored, once it is this many storage
 * timeouts old: its batch's writes were sent within one timeout of claiming and are waited for two
 * more (the write, then its outcome); one more is a margin for a late event loop, writes queued in
 * a client, and clocks that differ between instances. A request may answer 200 later still, but
 * only for a record it has read back, which no take-over can follow (it needs the record absent).
 */
export const STALE_AFTER_TIMEOUTS = 4

/** What the claim protocol needs of the log. */
export interface ClaimAppendContext {
  storage: Storage
  instanceId: string
  windowMs: number
  timeoutMs: number
  now: () => number
  claims: IdClaims
  keys: BatchKeys
  hours: HourIndex
  records: RecordReader
  settling: LateSettling
  /** The processes behind claims, where a process's end is final (see ProcessOwners). */
  owners?: ProcessOwners
  /** The driver keeps a record's bytes as given. */
  keepsBytes: boolean
  /** Every batch write is done when it returns: nothing to time. */
  localWrites: boolean
  onUnstored: EventLogOptions['onUnstored']
}

/** One append under the claim protocol: the batch, its keys, and what it holds so far. */
export interface Attempt extends BatchNames {
  readonly events: readonly EventEnvelope[]
  readonly ids: readonly string[]
  readonly receivedAt: number
  readonly raw?: RawBatch
  /** The clock skew corrected for the batch, kept in its record. */
  readonly skewMs?: number
  readonly flight: Flight
  /** Ids this append holds a claim on. */
  readonly mine: string[]
  /** Positions that are duplicates: repeated in the batch, or stored by another batch. */
  readonly duplicateIndexes: number[]
  /** Whether it waited for others of this process (running out of time is then theirs). */
  waited: boolean
  /** Ids it registered in `takingOver`. */
  tookOver?: string[]
  /** A claim call failed: it may have claimed some of its ids before it did. */
  claimsUnknown: boolean
  /** The batch writes, once sent, and the answer they give. */
  writes?: Promise<void>[]
  result?: AppendResult
  outboxEntry?: OutboxEntry
}

/** Ids another batch holds, by position, with the claim values found on them. */
export interface Conflicts {
  positions: number[]
  held: string[]
}

/** One claim call of the loop: the positions it asked for (all when undefined) and what it found. */
export interface ClaimRound {
  asked?: number[]
  /** Releases counted before the call: a holder that let go after it is not waited on. */
  releasesSeen: number
  found: (string | null)[]
}
