import type { IncomingMessage, ServerResponse } from 'node:http'
import { IngestError } from '../base/errors'
import type { EventQuery, PruneOptions } from '../log/event-log'
import { withTimeout } from '../base/timeout'
import { createHttpHandler } from '../http/handler'
import { createRequestLimits, type RateLimiter } from '../http/rate-limits'
import type { EventDefinitions } from '../model/definitions'
import type { EventEnvelope, MergeEvents } from '../model/model'
import { judgeSkew } from '../model/skew'
import { restrictToKey } from './key-sources'
import { withoutPrefix } from '../base/option-checks'
import { resolveOptions, type EventIngestOptions, type ResolvedOptions } from './options'
import { RetentionPrune } from './retention'
import { Replays } from '../forward/replay'
import { checkPeer } from '../base/peers'
import { closeRuntime, openRuntime, storedOf, type Runtime } from './runtime'
import type { EventIngest, IngestContext, IngestResult } from './types'

export type { EventIngestOptions } from './options'

/**
 * The core behind {@link createEventIngest}: its runtime once storage is ready, and its life
 * (the ingests under way, the retention prune, closing). Each field has one writer, named here.
 */
class IngestCore {
  /** Set by the readiness promise once storage is ready: the hot path then skips awaiting it. */
  private readyRuntime: Runtime | undefined
  /** Set by close(): new ingests are refused. */
  private closed = false
  /** Started by the readiness promise (with `retentionMs`, unless closed first); stopped by close(). */
  private prune: RetentionPrune | undefined
  /** Ingests under way, so close() can let them finish before storage goes away. */
  private active = 0
  /** Set by close() while ingests are under way: called when the last one ends. */
  private idle: (() => void) | undefined
  /** Resolves with the runtime; rejects, for every call, when the storage cannot be used. */
  readonly ready: Promise<Runtime>

  constructor(private readonly resolved: ResolvedOptions, report: (error: unknown) => void) {
    const { retentionMs } = resolved
    this.ready = openRuntime(resolved, report).then((runtime) => {
      this.readyRuntime = runtime
      if (retentionMs !== undefined && !this.closed) {
        this.prune = new RetentionPrune({ log: runtime.log, retentionMs, intervalMs: resolved.pruneIntervalMs, report: runtime.reportBackground })
        this.prune.schedule(0)
      }
      return runtime
    })
    // A failure here (a storage that cannot be used: a driver that cannot load, a directory that
    // cannot be written) is reported now and rejects every call; requests answer 503 saying why.
    this.ready.catch(report)
  }

  /** The runtime, once storage is ready. */
  get runtime(): Runtime | undefined {
    return this.readyRuntime
  }

  ingest(input: unknown, context: IngestContext): Promise<IngestResult> {
    if (this.closed) return Promise.reject(new IngestError('storage_unavailable', 'event ingest is closing; retry on another instance'))
    return this.ingestNow(input, context)
  }

  /** Validates, appends, hands the batch to the forwarder and counts it; counted as under way until it ends. */
  private async ingestNow(input: unknown, context: IngestContext): Promise<IngestResult> {
    this.active++
    try {
      const { log, stats, forwarder } = this.readyRuntime ?? (await this.opened())
      const receivedAt = context.receivedAt ?? Date.now()
      // A publishable key's request: events of another source are rejected, naming `source`.
      const batch = restrictToKey(this.resolved.model.validateBatch(input, context.hints, context.format === 'cloudevents' ? this.resolved.cloudEvents : undefined), context.key)
      if (batch.rejected.length > 0) stats.recordRejected(batch.rejected.length, receivedAt)
      if (batch.events.length === 0) return { accepted: 0, duplicates: 0, rejected: batch.rejected }
      const skewMs = this.skewOf(context.sentAt, receivedAt, batch.events as EventEnvelope[], batch.times)
      // Redacted after validation (rules see valid payloads), before storage: a batch with a field
      // redacted is stored from its redacted events, never from the bytes as received.
      const redacted = this.resolved.redaction?.redact(batch.events as EventEnvelope[])
      let appended
      try {
        const answer = redacted
          ? log.appendNow(redacted.events, receivedAt, undefined, skewMs)
          : log.appendNow(batch.events as EventEnvelope[], receivedAt, batch.received, skewMs)
        // On memory the log answers at once: nothing to wait for, not even a turn of the microtask queue.
        appended = answer instanceof Promise ? await answer : answer
      } catch (error) {
        // Contention between requests (`in_progress`) is not a storage failure.
        if (error instanceof IngestError && error.code === 'storage_unavailable') stats.recordStorageFailure(batch.events.length, receivedAt)
        throw error
      }
      if (forwarder && appended.outboxKey && appended.batchKey) {
        const delivery = forwarder.enqueue(appended.outboxKey, { batch: appended.batchKey, events: appended.stored, receivedAt })
        if (this.resolved.sink?.wait) await delivery
      }
      const duplicates = appended.duplicateIndexes.length
      if (duplicates > 0) {
        stats.recordDuplicates(duplicates, receivedAt)
        stats.recordAccepted(storedOf(batch.events, appended.duplicateIndexes), receivedAt, undefined, skewMs, context.key?.id)
      } else {
        stats.recordAccepted(batch.events, receivedAt, batch.times, skewMs, context.key?.id)
      }
      if (skewMs !== undefined && appended.stored > 0) stats.recordSkew('corrected', skewMs, receivedAt)
      if (redacted) stats.recordRedacted(storedOf(redacted.counts, appended.duplicateIndexes), receivedAt)
      return { accepted: appended.stored, duplicates, rejected: batch.rejected }
    } finally {
      if (--this.active === 0) this.idle?.()
    }
  }

  /** The clock skew to correct the batch by, if its send time calls for one; an absurd one is counted. */
  private skewOf(sentAt: string | undefined, receivedAt: number, events: readonly EventEnvelope[], times: readonly number[] | undefined): number | undefined {
    const settings = this.resolved.clockSkew
    if (!settings || sentAt === undefined) return undefined
    let latest = Number.NaN
    for (let i = 0; i < events.length; i++) {
      // The validator's parse where it made one (NaN where it did not).
      let at = times?.[i] ?? Number.NaN
      if (at !== at) at = Date.parse(events[i]!.occurredAt)
      if (at === at && !(at <= latest)) latest = at
    }
    const judged = judgeSkew(sentAt, receivedAt, latest, settings)
    if (judged.kind === 'ignored') this.readyRuntime?.stats.recordSkew('ignored', 0, receivedAt)
    return judged.kind === 'corrected' ? judged.skewMs : undefined
  }

  /** The rate limiter (with `rateLimits`), once storage is ready; as {@link opened} when it cannot be. */
  rateLimiter(): RateLimiter | Promise<RateLimiter> {
    return this.readyRuntime?.rateLimiter ?? this.opened().then((runtime) => runtime.rateLimiter!)
  }

  /** The runtime for an ingest: a storage that failed to open answers 503 saying why. */
  private opened(): Promise<Runtime> {
    return this.ready.catch((error: unknown) => {
      throw new IngestError('storage_unavailable', `storage is unavailable: ${withoutPrefix(error instanceof Error ? error.message : String(error))}`, undefined, { cause: error })
    })
  }

  // The reads the HTTP contract serves, each once storage is ready.
  async stats() {
    const { stats, forwarder } = await this.ready
    return { ...(await withTimeout(stats.snapshot(), this.resolved.storageTimeoutMs, 'stats read')), forwarding: forwarder?.state() ?? null }
  }

  /** The Prometheus text; `metrics_disabled` (404) when metrics are off. */
  async metricsText(): Promise<{ contentType: string; text: string }> {
    if (!this.resolved.metrics) throw new IngestError('metrics_disabled', 'metrics are disabled: set the metrics option (or EVENT_METRICS=1) and install prom-client')
    const { metrics } = await this.opened()
    return { contentType: metrics!.contentType, text: await metrics!.text() }
  }

  async deadLetters() {
    const { forwarder } = await this.ready
    return forwarder ? forwarder.deadLetters() : []
  }

  async requeue(ids?: readonly string[]) {
    const { forwarder } = await this.ready
    return forwarder ? forwarder.requeue(ids) : 0
  }

  /** Replays, made with the first one once storage is ready. */
  private replaysOf: Replays | undefined

  private async replaying(): Promise<Replays> {
    const { log, forwarder } = await this.ready
    const sink = this.resolved.sink
    if (!forwarder || !sink) throw new IngestError('no_sink', 'replay: no sink is configured (set sink or EVENT_SINK_URL)')
    this.replaysOf ??= new Replays({ log, forwarder, prefix: 'events', instanceId: this.resolved.instanceId, maxReplays: sink.maxReplays, maxInFlight: sink.maxReplayInFlight })
    return this.replaysOf
  }

  async replay(filter: unknown) {
    if (this.closed) throw new IngestError('storage_unavailable', 'event ingest is closing; replay on another instance')
    const replays = await this.replaying()
    return replays.start(filter)
  }

  async replays() {
    await this.ready
    return this.replaysOf?.list() ?? []
  }

  async cancelReplay(id: string) {
    const found = this.replaysOf?.cancel(id)
    if (!found) throw new IngestError('not_found', `id: no replay ${JSON.stringify(id)} in this process`, { field: 'id' })
    return found
  }

  async events(query?: EventQuery) {
    const { log } = await this.ready
    return log.list(query)
  }

  async pruneNow(options: PruneOptions) {
    const { log } = await this.ready
    return log.prune(options)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const runtime = await this.ready.catch(() => undefined)
    this.prune?.stop()
    const timeoutMs = this.resolved.storageTimeoutMs
    // Requests already taken finish (each is bounded by the storage timeout); new ones get 503.
    // A prune stops at its next storage call, which a hung driver may never answer.
    const ingests = this.active === 0 ? undefined : new Promise<void>((resolve) => (this.idle = resolve))
    await Promise.allSettled([ingests, this.prune?.settled(timeoutMs * 2)])
    if (runtime) await closeRuntime(runtime, timeoutMs)
  }
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
  if (resolved.metrics) checkPeer('prom-client', 'metrics')
  if (resolved.sink?.type === 'nats') checkPeer('nats', 'a nats sink')
  if (resolved.sink?.type === 'redis-stream') checkPeer('ioredis', 'a redis-stream sink')
  const { model, instanceId } = resolved
  // Background failures are reported; a reporter that throws must not take the process down.
  const report = (error: unknown) => {
    try {
      resolved.onError(error)
    } catch {}
  }
  const core = new IngestCore(resolved, report)
  const ingest = (input: unknown, context: IngestContext = {}) => core.ingest(input, context)
  const stats = () => core.stats()
  const deadLetters = () => core.deadLetters()
  const requeue = (ids?: readonly string[]) => core.requeue(ids)
  const replay = (filter: unknown) => core.replay(filter)
  const replays = () => core.replays()
  const cancelReplay = (id: string) => core.cancelReplay(id)
  const schema = () => model.describe()
  const events = (query?: EventQuery) => core.events(query) as never
  const metricsText = () => core.metricsText()
  const metrics = () => metricsText().then((answer) => answer.text)
  // For a host's internal port: no admin auth, so mount it where only the scraper reaches.
  const metricsHandler = (_request: IncomingMessage, response: ServerResponse) => {
    metricsText().then(
      ({ contentType, text }) => response.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' }).end(text),
      (error: unknown) => {
        const known = error instanceof IngestError ? error : new IngestError('storage_unavailable', `metrics are unavailable: ${(error as Error).message}`)
        response.writeHead(known.status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(known.toJSON()))
      },
    )
  }

  // The HTTP contract is built from the parts of the core it serves, before the core itself.
  const http = createHttpHandler({ model, ingest, stats, schema, events, deadLetters, requeue, metricsText, replay, replays, cancelReplay }, {
    tokens: resolved.tokens,
    adminTokens: resolved.adminTokens,
    publishableKeys: resolved.publishableKeys,
    authorize: resolved.authorize,
    retryAfterSeconds: resolved.retryAfterSeconds,
    cors: resolved.cors,
    onRefused: (code) => core.runtime?.stats.recordRefused(code, Date.now()),
    rateLimits: resolved.rateLimits && createRequestLimits(resolved.rateLimits, () => core.rateLimiter()),
  })

  return {
    model,
    instanceId,
    async ready() {
      await core.ready
    },
    ingest,
    stats,
    deadLetters,
    requeue,
    replay,
    replays,
    cancelReplay,
    schema,
    events,
    prune: (pruneOptions) => core.pruneNow(pruneOptions),
    metrics,
    metricsHandler,
    handle: http.handle,
    owns: http.owns,
    refusalDrain: resolved.refusalDrain,
    close: () => core.close(),
    get storage() {
      return core.runtime?.storage
    },
    get log() {
      return core.runtime?.log
    },
  }
}
