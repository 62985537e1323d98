import type { Storage } from 'unstorage'
import { createEventLog, type EventLog } from '../log/event-log'
import { createStatsWindow, statsDefaults, type StatsWindow } from '../stats/stats'
import { resolveStorage } from '../storage/resolve'
import { createForwarder } from '../forward/forwarder'
import { createIngestMetrics, loadPromClient, type IngestMetrics } from '../metrics/metrics'
import type { Forwarder, ForwardingState } from '../forward/types'
import { withTimeout } from '../base/timeout'
import type { ResolvedOptions } from './options'
import { loadRateLimitLibrary, openRateLimiter, type RateLimiter } from '../http/rate-limits'

/**
 * What the core works with once its storage is ready, made in one place ({@link openRuntime}) and
 * never changed after.
 */
export interface Runtime {
  readonly storage: Storage
  /** The storage was created here, so closing releases it. */
  readonly owned: boolean
  readonly log: EventLog
  readonly stats: StatsWindow
  /** Set when a sink is configured. */
  readonly forwarder: Forwarder | undefined
  /** The Prometheus metrics, with `metrics`. */
  readonly metrics: IngestMetrics | undefined
  /** Set when rate limits are configured. */
  readonly rateLimiter: RateLimiter | undefined
  /**
   * Reports a failure of background work (stats flushes, prunes), unless the storage is known to
   * be unreachable: that was said once, in one line, and is not repeated every few seconds.
   */
  readonly reportBackground: (error: unknown) => void
}

/**
 * Opens the storage, then the stats window, the forwarder (with a sink) and the event log on it.
 * `report` is told of failures; one that throws must not take the process down.
 */
export async function openRuntime(resolved: ResolvedOptions, report: (error: unknown) => void): Promise<Runtime> {
  const { instanceId, sink } = resolved
  const timeoutMs = resolved.storageTimeoutMs
  // Loaded first: without the package, nothing is opened.
  const rateLimitLibrary = resolved.rateLimits ? await loadRateLimitLibrary() : undefined
  const promClient = resolved.metrics ? await loadPromClient() : undefined
  const opened = await resolveStorage(resolved.storage, resolved.env, { onUnreachable: report })
  const { storage } = opened
  const reportBackground = (error: unknown) => {
    if (!opened.unreachable()) report(error)
  }
  // The log is made first: whether its batch write counts stored events decides where the stats
  // read them. Its callbacks reach the stats and the forwarder only once a batch is written.
  const log = createEventLog({
    storage,
    instanceId,
    dedupeWindowMs: resolved.dedupeWindowMs,
    timeoutMs,
    outbox: sink !== undefined,
    maxEvents: opened.maxEvents,
    maxBytes: opened.maxBytes,
    store: resolved.store,
    // Where the store can, the batch write counts the events it stores (two windows, as buckets).
    counts: { prefix: statsDefaults.prefix, ttlMs: resolved.stats.windowMinutes * 60_000 * 2 },
    // A batch whose request answered 503 but whose writes landed after all: stored, so counted
    // and forwarded.
    onLateWrite(result, events, receivedAt) {
      if (forwarder && result.outboxKey) void forwarder.enqueue(result.outboxKey, { batch: result.batchKey, events: result.stored, receivedAt }).catch(report)
      stats.recordAccepted(storedOf(events, result.duplicateIndexes), receivedAt)
    },
    // Its outbox entry is the forwarder's to drop (or to forward, should the record land).
    onUnstored(outboxKey, entry) {
      if (forwarder) void forwarder.enqueue(outboxKey, entry).catch(report)
    },
    onError: reportBackground,
  })
  const window = createStatsWindow({ ...resolved.stats, storage, instanceId, onError: reportBackground, exactAccepted: log.countsAccepted })
  // With metrics, every count the stats take is also counted there (per batch, on the same calls).
  const metrics: IngestMetrics | undefined = promClient && resolved.metrics ? createIngestMetrics(promClient, resolved.metrics, sink ? (): ForwardingState => forwarder!.state() : undefined) : undefined
  const stats: StatsWindow = metrics ? metrics.meter(window, resolved.stats) : window
  const forwarder = sink ? createForwarder({ storage, prefix: 'events', instanceId, sink, stats, storageTimeoutMs: timeoutMs, onError: resolved.onError }) : undefined
  const rateLimiter = rateLimitLibrary && resolved.rateLimits
    ? openRateLimiter(rateLimitLibrary, resolved.rateLimits, storage, 'events', {
        timeoutMs,
        onRefused: (limit) => stats.recordRateLimited(limit, Date.now()),
        onStoreError(error, first) {
          stats.recordRateLimitStoreError(Date.now())
          if (first) reportBackground(new Error(`[event-ingest] rate limits: the shared store failed, counting in this process until it answers: ${(error as Error).message}`, { cause: error }))
        },
      })
    : undefined
  return { storage, owned: opened.owned, log, stats, forwarder, rateLimiter, metrics, reportBackground }
}

/**
 * Closes what {@link openRuntime} opened, once no ingest is under way: batches stored after their
 * request answered 503 get a last attempt at their outbox entry, forwarding stops, stats are
 * flushed (within `timeoutMs`) and storage created here is released.
 */
export async function closeRuntime(runtime: Runtime, timeoutMs: number): Promise<void> {
  await runtime.log.close()
  await runtime.forwarder?.close()
  await withTimeout(runtime.stats.close(), timeoutMs, 'flush').catch(() => {})
  runtime.metrics?.close()
  if (runtime.owned) await runtime.storage.dispose().catch(() => {})
}

/** The events of an appended batch that were stored: all but those at `duplicateIndexes`. */
export function storedOf<T>(events: readonly T[], duplicateIndexes: readonly number[]): T[] {
  const skip = new Set(duplicateIndexes)
  return events.filter((_, i) => !skip.has(i))
}
