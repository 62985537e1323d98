import { atomicBatchStore, keepsBytes, localMap, writesEndWithProcess } from '../storage/capabilities'
import { createIdClaims } from '../storage/claims'
import { batchBase, claimBase, hoursKey, outboxBase, processBase } from '../storage/layout'
import { MemoryBatchStore } from '../storage/memory-store'
import { AtomicAppend } from './atomic-append'
import { BatchKeys } from './batch-keys'
import { ClaimAppend } from './claim-append'
import { STALE_AFTER_TIMEOUTS } from './claim-attempt'
import type { LogContext } from './context'
import { HourIndex } from './hours'
import { ProcessOwners } from './owners'
import { pruneLog } from './prune'
import { getEvent, listEvents, scanBatches } from './query'
import { RecordReader } from './record'
import { LateSettling } from './settle'
import type { AppendResult, EventLog, EventLogOptions } from './types'

export { parseRecord } from './record'
export type { AppendResult, BatchRecord, EventLog, EventLogOptions, EventPage, EventQuery, OutboxEntry, PruneOptions, RawBatch, StoredEvent } from './types'

/**
 * Creates the event log: append-only batch records partitioned by hour, plus one dedupe claim per
 * id. The write strategy follows what the storage can do (src/storage/capabilities.ts): a one-step
 * batch write where there is one (the memory driver; a store given as `store`), else the claim
 * protocol of docs/design/dedupe.md (the fs driver, generic unstorage drivers).
 */
export function createEventLog(options: EventLogOptions): EventLog {
  const { storage, instanceId } = options
  const prefix = options.prefix ?? 'events'
  const windowMs = options.dedupeWindowMs ?? 86_400_000
  const timeoutMs = options.timeoutMs ?? 5000
  const now = options.now ?? Date.now
  const outbox = options.outbox ?? false
  const store = options.store ?? atomicBatchStore(storage, { prefix, outbox, windowMs, maxEvents: options.maxEvents, maxBytes: options.maxBytes, onError: options.onError, staleAfterMs: timeoutMs * STALE_AFTER_TIMEOUTS, countsBase: options.counts?.prefix })
  // The bound of a memory storage, kept by its store.
  const memory = store instanceof MemoryBatchStore ? store : undefined
  // A host's store writes its claims as keys, wherever the storage is: the log reads them there.
  const claims = createIdClaims(storage, claimBase(prefix), { keyed: options.store !== undefined })
  const records = new RecordReader(storage, timeoutMs)
  const hours = new HourIndex(storage, hoursKey(prefix), timeoutMs, now, options.store ? undefined : localMap(storage, hoursKey(prefix)))
  const settling = new LateSettling({ storage, timeoutMs, records, options })
  const keys = new BatchKeys(prefix, instanceId, outbox, now)
  // On the fs driver a claim whose process has ended is taken over at once (see ProcessOwners).
  const ownerKeys = [batchBase(prefix), claimBase(prefix), processBase(prefix), ...(outbox ? [outboxBase(prefix)] : [])]
  const owners = !store && !options.store && writesEndWithProcess(storage, ownerKeys) ? new ProcessOwners(storage, prefix, keys.sample(), timeoutMs, now) : undefined
  const context: LogContext = { storage, prefix, windowMs, timeoutMs, now, outbox, claims, hours, records, owners, onRemoved: memory && ((key) => memory.removed(key)), onPruned: memory && (() => memory.pruned()) }

  const bytes = !options.store && keepsBytes(storage, batchBase(prefix))
  const strategy = store
    ? new AtomicAppend({ store, instanceId, windowMs, timeoutMs, keys, hours, records, settling, keepsBytes: bytes, counts: store.countsAccepted ? options.counts : undefined })
    : new ClaimAppend({
        storage, instanceId, windowMs, timeoutMs, now, claims, keys, hours, records, settling, owners,
        keepsBytes: bytes,
        // Every batch write goes to the memory driver: a write is done when it returns, nothing to time.
        localWrites: localMap(storage, batchBase(prefix)) !== undefined && (!outbox || localMap(storage, outboxBase(prefix)) !== undefined),
        onUnstored: options.onUnstored,
      })

  const appendNow: EventLog['appendNow'] = (events, receivedAt, raw, skewMs) => strategy.append(events, receivedAt, raw, skewMs)

  return {
    appendNow,
    append(events, receivedAt, raw, skewMs): Promise<AppendResult> {
      try {
        return Promise.resolve(appendNow(events, receivedAt, raw, skewMs))
      } catch (error) {
        return Promise.reject(error)
      }
    },
    list: (query) => listEvents(context, query),
    get: (id) => getEvent(context, id),
    batches: (since, until) => scanBatches(context, since, until),
    prune: (pruneOptions) => pruneLog(context, pruneOptions),
    get corruptRecords() {
      return records.corrupt
    },
    atomicDedupe: store !== undefined || claims.atomic,
    countsAccepted: store?.countsAccepted === true && options.counts !== undefined,
    get kept() {
      return memory?.kept ?? { batches: 0, events: 0, bytes: 0 }
    },
    get dropped() {
      return memory?.dropped ?? { batches: 0, events: 0 }
    },
    close: () => settling.close(),
  }
}
