import { IngestError } from './errors'
import type { EventQuery } from '../log/event-log'
import { withTimeout } from './timeout'
import { createHttpHandler } from '../http/handler'
import type { EventDefinitions } from '../model/definitions'
import type { EventEnvelope, MergeEvents } from '../model/model'
import { withoutPrefix } from './option-checks'
import { resolveOptions, type EventIngestOptions } from './options'
import { RetentionPrune } from './retention'
import { closeRuntime, openRuntime, storedOf, type Runtime } from './runtime'
import type { EventIngest, IngestContext, IngestResult } from './types'

export type { EventIngestOptions } from './options'

/** The core's state over its life. Each field has one writer, named here. */
interface CoreState {
  /** Set by the readiness promise once storage is ready: the hot path then skips awaiting it. */
  runtime: Runtime | undefined
  /** Set by close(): new ingests are refused. */
  closed: boolean
  /** Started by the readiness promise (with `retentionMs`, unless closed first); stopped by close(). */
  prune: RetentionPrune | undefined
  /** Ingests under way, so close() can let them finish before storage goes away. */
  readonly inflight: Set<Promise<unknown>>
}

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
  const { model, instanceId, retentionMs } = resolved
  const timeoutMs = resolved.storageTimeoutMs
  const onError = resolved.onError
  // Background failures are reported; a reporter that throws must not take the process down.
  const report = (error: unknown) => {
    try {
      onError(error)
    } catch {}
  }
  const state: CoreState = { runtime: undefined, closed: false, prune: undefined, inflight: new Set() }

  const readyPromise = openRuntime(resolved, report).then((runtime) => {
    state.runtime = runtime
    if (retentionMs !== undefined && !state.closed) {
      state.prune = new RetentionPrune({ log: runtime.log, retentionMs, intervalMs: resolved.pruneIntervalMs, report: runtime.reportBackground })
      state.prune.schedule(0)
    }
    return runtime
  })
  // A failure here (a storage that cannot be used: a driver that cannot load, a directory that
  // cannot be written) is reported now and rejects every call; requests answer 503 saying why.
  readyPromise.catch(report)

  async function ready(): Promise<void> {
    await readyPromise
  }

  /** The runtime for an ingest: a storage that failed to open answers 503 saying why. */
  function opened(): Promise<Runtime> {
    return readyPromise.catch((error: unknown) => {
      throw new IngestError('storage_unavailable', `storage is unavailable: ${withoutPrefix(error instanceof Error ? error.message : String(error))}`, undefined, { cause: error })
    })
  }

  function ingest(input: unknown, context: IngestContext = {}): Promise<IngestResult> {
    if (state.closed) return Promise.reject(new IngestError('storage_unavailable', 'event ingest is closing; retry on another instance'))
    const run = ingestNow(input, context)
    state.inflight.add(run)
    const done = () => state.inflight.delete(run)
    run.then(done, done)
    return run
  }

  async function ingestNow(input: unknown, context: IngestContext): Promise<IngestResult> {
    const { log, stats, forwarder } = state.runtime ?? (await opened())
    const receivedAt = context.receivedAt ?? Date.now()
    const batch = model.validateBatch(input, context.hints)
    if (batch.rejected.length > 0) stats.recordRejected(batch.rejected.length, receivedAt)
    if (batch.events.length === 0) return { accepted: 0, duplicates: 0, rejected: batch.rejected }
    let appended
    try {
      appended = await log.append(batch.events as EventEnvelope[], receivedAt, batch.received)
    } catch (error) {
      // Contention between requests (`in_progress`) is not a storage failure.
      if (error instanceof IngestError && error.code === 'storage_unavailable') stats.recordStorageFailure(batch.events.length, receivedAt)
      throw error
    }
    if (forwarder && appended.outboxKey && appended.batchKey) {
      const delivery = forwarder.enqueue(appended.outboxKey, { batch: appended.batchKey, events: appended.stored, receivedAt })
      if (resolved.sink?.wait) await delivery
    }
    const duplicates = appended.duplicateIndexes.length
    if (duplicates > 0) {
      stats.recordDuplicates(duplicates, receivedAt)
      stats.recordAccepted(storedOf(batch.events, appended.duplicateIndexes), receivedAt)
    } else {
      stats.recordAccepted(batch.events, receivedAt, batch.times)
    }
    return { accepted: appended.stored, duplicates, rejected: batch.rejected }
  }

  // The reads the HTTP contract serves, each once storage is ready.
  async function readStats() {
    const { stats, forwarder } = await readyPromise
    return { ...(await withTimeout(stats.snapshot(), timeoutMs, 'stats read')), forwarding: forwarder?.state() ?? null }
  }
  async function deadLetters() {
    const { forwarder } = await readyPromise
    return forwarder ? forwarder.deadLetters() : []
  }
  async function requeue(ids?: readonly string[]) {
    const { forwarder } = await readyPromise
    return forwarder ? forwarder.requeue(ids) : 0
  }
  const schema = () => model.describe()
  async function events(query?: EventQuery) {
    const { log } = await readyPromise
    return log.list(query) as never
  }

  // The HTTP contract is built from the parts of the core it serves, before the core itself.
  const http = createHttpHandler({ model, ingest, stats: readStats, schema, events, deadLetters, requeue }, {
    tokens: resolved.tokens,
    adminTokens: resolved.adminTokens,
    authorize: resolved.authorize,
    retryAfterSeconds: resolved.retryAfterSeconds,
    cors: resolved.cors,
    onRefused: (code) => state.runtime?.stats.recordRefused(code, Date.now()),
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
      const { log } = await readyPromise
      return log.prune(pruneOptions)
    },
    handle: http.handle,
    owns: http.owns,
    refusalDrain: resolved.refusalDrain,
    async close() {
      if (state.closed) return
      state.closed = true
      const runtime = await readyPromise.catch(() => undefined)
      state.prune?.stop()
      // Requests already taken finish (each is bounded by the storage timeout); new ones get 503.
      // A prune stops at its next storage call, which a hung driver may never answer.
      await Promise.allSettled([...state.inflight, state.prune?.settled(timeoutMs * 2)])
      if (runtime) await closeRuntime(runtime, timeoutMs)
    },
    get storage() {
      return state.runtime?.storage
    },
    get log() {
      return state.runtime?.log
    },
  }
}
