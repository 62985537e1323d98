import type { Storage } from 'unstorage'
import { IngestError } from './errors'
import { createEventLog, type EventLog, type EventQuery } from '../log/event-log'
import { withTimeout } from './timeout'
import { createHttpHandler } from '../http/handler'
import type { EventDefinitions } from '../model/definitions'
import type { EventEnvelope, MergeEvents } from '../model/model'
import { createStatsWindow, type StatsWindow } from '../stats/stats'
import { resolveStorage } from '../storage/resolve'
import { withoutPrefix } from './option-checks'
import { createForwarder, type Forwarder } from '../forward/forwarder'
import { resolveOptions, type EventIngestOptions } from './options'
import type { BatchHints } from '../model/validate'
import type { EventIngest, IngestResult } from './types'

export type { EventIngestOptions } from './options'

/**
 * Creates the core: model, event log, stats and the HTTP contract, with no web framework.
 *
 * @example
 * import { createEventIngest } from 'event-ingest'
 *
 * const ingest = createEventIngest({ storage: 'fs:./data/events', token: process.env.EVENT_INGEST_TOKEN })
 * const result = await ingest.ingest([{ id: 'e1', name: 'ProductViewed', schemaVersion: 1,
 *   occurredAt: new Date().toISOString(), source: 'storefront', payload: { productId: 'p1' } }])
 * // → { accepted: 1, duplicates: 0, rejected: [] }
 */
export function createEventIngest<const E extends EventDefinitions = {}, D extends EventDefinitions = MergeEvents<E>>(
  options: EventIngestOptions<E, D> = {},
): EventIngest<D> {
  const resolved = resolveOptions(options, process.env)
  const { model, instanceId, dedupeWindowMs, retentionMs, pruneIntervalMs, sink, env } = resolved
  const timeoutMs = resolved.storageTimeoutMs
  const onError = resolved.onError
  // Background failures are reported; a reporter that throws must not take the process down.
  const report = (error: unknown) => {
    try {
      onError(error)
    } catch {}
  }
  // While the storage is known to be unreachable (said once, in one line), the failures it causes
  // in the background (stats flushes, prunes) are not repeated every few seconds.
  let unreachable = () => false
  const reportBackground = (error: unknown) => {
    if (!unreachable()) report(error)
  }
  let storage: Storage | undefined
  let log: EventLog | undefined
  let stats: StatsWindow | undefined
  let forwarder: Forwarder | undefined
  let owned = false
  let closed = false
  // Set once everything above is in place: the hot path then skips awaiting readiness.
  let started = false

  const readyPromise = (async () => {
    const opened = await resolveStorage(resolved.storage, env, { onUnreachable: report })
    storage = opened.storage
    owned = opened.owned
    unreachable = opened.unreachable
    log = createEventLog({
      storage,
      instanceId,
      dedupeWindowMs,
      timeoutMs,
      outbox: sink !== undefined,
      maxEvents: opened.maxEvents,
      maxBytes: opened.maxBytes,
      store: resolved.store,
      // A batch whose request answered 503 but whose writes landed after all: stored, so counted
      // and forwarded.
      onLateWrite(result, events, receivedAt) {
        if (forwarder && result.outboxKey) void forwarder.enqueue(result.outboxKey, { batch: result.batchKey, events: result.stored, receivedAt }).catch(report)
        stats?.recordAccepted(storedOf(events, result.duplicateIndexes), receivedAt)
      },
      // Its outbox entry is the forwarder's to drop (or to forward, should the record land).
      onUnstored(outboxKey, entry) {
        if (forwarder) void forwarder.enqueue(outboxKey, entry).catch(report)
      },
      onError: reportBackground,
    })
    stats = createStatsWindow({ ...resolved.stats, storage, instanceId, onError: reportBackground })
    if (sink) forwarder = createForwarder({ storage, prefix: 'events', instanceId, sink, stats, storageTimeoutMs: timeoutMs, onError })
    started = true
    if (retentionMs !== undefined && !closed) schedulePrune(0)
  })()

  // The retention prune: one run at a time, on a timer that never keeps the process alive, stopped
  // by close() between two storage calls (a first run over a long backlog can take a while).
  let pruneTimer: ReturnType<typeof setTimeout> | undefined
  let pruning: Promise<void> | undefined
  const stopPruning = new AbortController()
  function schedulePrune(delayMs: number) {
    pruneTimer = setTimeout(() => {
      pruneTimer = undefined
      pruning = log!.prune({ olderThan: Date.now() - retentionMs!, signal: stopPruning.signal }).then(
        () => {},
        (error: unknown) => reportBackground(new Error(`retention prune failed (retried in ${pruneIntervalMs} ms): ${error instanceof Error ? error.message : String(error)}`, { cause: error })),
      ).finally(() => {
        pruning = undefined
        if (!closed) schedulePrune(pruneIntervalMs)
      })
    }, delayMs)
    pruneTimer.unref?.()
  }
  // A failure here (a storage that cannot be used: a driver that cannot load, a directory that
  // cannot be written) is reported now and rejects every call; requests answer 503 saying why.
  readyPromise.catch(report)

  async function ready(): Promise<void> {
    await readyPromise
  }

  // Ingests under way, so close() can let them finish before storage goes away.
  const inflight = new Set<Promise<unknown>>()

  function ingest(input: unknown, context: { receivedAt?: number; hints?: BatchHints } = {}): Promise<IngestResult> {
    if (closed) return Promise.reject(new IngestError('storage_unavailable', 'event ingest is closing; retry on another instance'))
    const run = ingestNow(input, context)
    inflight.add(run)
    const done = () => inflight.delete(run)
    run.then(done, done)
    return run
  }

  async function ingestNow(input: unknown, context: { receivedAt?: number; hints?: BatchHints }): Promise<IngestResult> {
    if (!started) {
      await readyPromise.catch((error: unknown) => {
        throw new IngestError('storage_unavailable', `storage is unavailable: ${withoutPrefix(error instanceof Error ? error.message : String(error))}`, undefined, { cause: error })
      })
    }
    const receivedAt = context.receivedAt ?? Date.now()
    const batch = model.validateBatch(input, context.hints)
    if (batch.rejected.length > 0) stats!.recordRejected(batch.rejected.length, receivedAt)
    if (batch.events.length === 0) return { accepted: 0, duplicates: 0, rejected: batch.rejected }
    let appended
    try {
      const answer = log!.appendNow(batch.events as EventEnvelope[], receivedAt, batch.raw === undefined
        ? undefined
        : { text: batch.raw, bytes: batch.rawBytes, owned: batch.rawBytesOwned })
      // On memory the log answers at once: nothing to wait for, not even a turn of the microtask queue.
      appended = answer instanceof Promise ? await answer : answer
    } catch (error) {
      // Contention between requests (`in_progress`) is not a storage failure.
      if (error instanceof IngestError && error.code === 'storage_unavailable') stats!.recordStorageFailure(batch.events.length, receivedAt)
      throw error
    }
    if (forwarder && appended.outboxKey && appended.batchKey) {
      const delivery = forwarder.enqueue(appended.outboxKey, { batch: appended.batchKey, events: appended.stored, receivedAt })
      if (sink?.wait) await delivery
    }
    const duplicates = appended.duplicateIndexes.length
    if (duplicates > 0) {
      stats!.recordDuplicates(duplicates, receivedAt)
      stats!.recordAccepted(storedOf(batch.events, appended.duplicateIndexes), receivedAt)
    } else {
      stats!.recordAccepted(batch.events, receivedAt, batch.times)
    }
    return { accepted: appended.stored, duplicates, rejected: batch.rejected }
  }

  // The reads the HTTP contract serves, each once storage is ready.
  async function readStats() {
    await readyPromise
    return { ...(await withTimeout(stats!.snapshot(), timeoutMs, 'stats read')), forwarding: forwarder?.state() ?? null }
  }
  async function deadLetters() {
    await readyPromise
    return forwarder ? forwarder.deadLetters() : []
  }
  async function requeue(ids?: readonly string[]) {
    await readyPromise
    return forwarder ? forwarder.requeue(ids) : 0
  }
  const schema = () => model.describe()
  async function events(query?: EventQuery) {
    await readyPromise
    return log!.list(query) as never
  }

  // The HTTP contract is built from the parts of the core it serves, before the core itself.
  const http = createHttpHandler({ model, ingest, stats: readStats, schema, events, deadLetters, requeue }, {
    tokens: resolved.tokens,
    adminTokens: resolved.adminTokens,
    authorize: resolved.authorize,
    retryAfterSeconds: resolved.retryAfterSeconds,
    cors: resolved.cors,
    onRefused: (code) => stats?.recordRefused(code, Date.now()),
  })

  return {
    model,
    instanceId,
    ready,
    ingest,
    stats: readStats,
    deadLetters,
    requeue,
    schema,
    events,
    async prune(pruneOptions) {
      await readyPromise
      return log!.prune(pruneOptions)
    },
    handle: http.handle,
    owns: http.owns,
    refusalDrain: resolved.refusalDrain,
    async close() {
      if (closed) return
      closed = true
      await readyPromise.catch(() => {})
      clearTimeout(pruneTimer)
      stopPruning.abort()
      // Requests already taken finish (each is bounded by the storage timeout); new ones get 503.
      // A prune stops at its next storage call, which a hung driver may never answer.
      await Promise.allSettled([...inflight, pruning && withTimeout(pruning, timeoutMs * 2, 'prune')])
      // Batches stored after their request answered 503 get a last attempt at their outbox entry.
      await log?.close()
      await forwarder?.close()
      if (stats) await withTimeout(stats.close(), timeoutMs, 'flush').catch(() => {})
      if (owned) await storage?.dispose().catch(() => {})
    },
    get storage() {
      return storage
    },
    get log() {
      return log
    },
  }
}

/** The events of an appended batch that were stored: all but those at `duplicateIndexes`. */
function storedOf<T>(events: readonly T[], duplicateIndexes: readonly number[]): T[] {
  const skip = new Set(duplicateIndexes)
  return events.filter((_, i) => !skip.has(i))
}

