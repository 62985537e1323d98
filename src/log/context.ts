import type { Storage } from 'unstorage'
import type { IdClaims } from '../storage/claims'
import type { HourIndex } from './hours'
import type { ProcessOwners } from './owners'
import type { RecordReader } from './record'

/** What the reading and pruning parts of the log share: set once by createEventLog. */
export interface LogContext {
  readonly storage: Storage
  readonly prefix: string
  readonly windowMs: number
  readonly timeoutMs: number
  readonly now: () => number
  /** Whether batches have outbox entries (a prune keeps batches still in the outbox). */
  readonly outbox: boolean
  readonly claims: IdClaims
  readonly hours: HourIndex
  readonly records: RecordReader
  /** The processes behind claims, where a claim's process ending is final (the fs driver). */
  readonly owners?: ProcessOwners
  /** Told of each batch a prune removed (the memory bound counts it out). */
  readonly onRemoved?: (batchKey: string) => void
  /** Told when a prune ends, however it ends (after the last `onRemoved` of it). */
  readonly onPruned?: () => void
}
