import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { Storage } from 'unstorage'
import { parseTokens } from './auth'
import { IngestError } from './errors'
import { createEventLog, type EventLog, type EventQuery } from './event-log'
import { withTimeout } from './timeout'
import { createHttpHandler } from './http'
import type { Limits } from './limits'
import type { EventDefinitions, SourcePolicy } from './definitions'
import { createEventModel, type EventEnvelope, type EventModel, type MergeEvents } from './model'
import { createStatsWindow, type StatsWindow } from './stats'
import { checkStorageOption, resolveStorage, type StorageOption } from './storage'
import { checkFunction, checkKeys, checkNumber, checkObject, checkTokens, MAX_TIMER_MS, shown } from './option-checks'
import { checkSinkOptions, createForwarder, type Forwarder, type SinkOptions } from './forwarder'
import type { BatchHints } from './validate'
import type { CorsOptions, EventIngest, IngestHttpRequest, IngestResult, RefusalDrain } from './types'

/** Options of {@link createEventIngest}. Environment variables are defaults; options win. */
export interface EventIngestOptions<E extends EventDefinitions = {}, D extends EventDefinitions = any> {
  /** A ready model; its types flow to the core. Give either this or `events`/`sourcePolicy`/`limits`. */
  model?: EventModel<D>
  /** Event names to add to the canonical v1 model. */
  events?: E
  /** @default 'reject' */
  sourcePolicy?: SourcePolicy
  /** Size and count limits. See the README's limits table for defaults. */
  limits?: Partial<Limits>
  /**
   * Where events are stored.
   * @default process.env.EVENT_STORAGE ?? 'memory:'
   */
  storage?: StorageOption
  /**
   * Token(s) required in `x-event-token` on ingest; several allow rotation. Unset: ingest is open.
   * @default process.env.EVENT_INGEST_TOKEN (comma-separated)
   */
  token?: string | readonly string[]
  /**
   * Token(s) required as `Authorization: Bearer …` on admin routes.
   * @default process.env.EVENT_ADMIN_TOKEN (comma-separated)
   */
  adminToken?: string | readonly string[]
  /** Host hook for admin access (for example, your own session check). Admin routes are refused when neither this nor an admin token is set. */
  authorize?: (request: IngestHttpRequest) => boolean | Promise<boolean>
  /**
   * How long an id is remembered for deduplication, in ms.
   * @default 86_400_000 (24 h)
   */
  dedupeWindowMs?: number
  /**
   * Keep stored batches this long, in ms: older ones are deleted by a prune that runs in the
   * background, once after start and then every `pruneIntervalMs` (see `prune`: batches still to
   * forward stay, and dedupe claims past the window go on drivers without expiry). At least
   * `dedupeWindowMs`, so a retried event never finds its id remembered but its batch gone.
   * @default none: batches are kept until you call `prune`
   */
  retentionMs?: number
  /**
   * How often the retention prune runs, in ms (with `retentionMs`). Each instance sharing a
   * storage runs its own; deleting what another already deleted is harmless.
   * @default 3_600_000 (1 h)
   */
  pruneIntervalMs?: number
  /**
   * Longest a storage operation may take before ingest answers 503, in ms. A batch write that
   * times out is still waited for up to this long again: landing whole, it answers 200. A dedupe
   * claim whose batch is not stored is taken over once it is 4 × this old (by the process that made
   * it, as soon as that batch's outcome is known).
   * @default 5000
   */
  storageTimeoutMs?: number
  /**
   * Seconds in the `Retry-After` header of a 503.
   * @default 2
   */
  retryAfterSeconds?: number
  /**
   * How much of a body left unread by a refusal (a wrong token, a body over `maxBodyBytes`) is read
   * and dropped after the answer before the connection is closed, so that a client still sending
   * reads the answer rather than a reset. See {@link RefusalDrain}.
   */
  refusalDrain?: Partial<RefusalDrain>
  /**
   * This process's id: batch keys and stats buckets are per instance. Keep it stable across
   * restarts of one instance to keep its stats.
   * @default `${hostname}-${pid}-${random}`
   */
  instanceId?: string
  /**
   * Forward accepted batches to this sink, at least once, through a durable outbox.
   * @default process.env.EVENT_SINK_URL (with EVENT_SINK_TOKEN); unset: no forwarding
   */
  sink?: string | SinkOptions | false
  /** CORS for browser producers on other origins (ingest and schema routes). Off by default. */
  cors?: CorsOptions
  /** Stats window settings. */
  stats?: { windowMinutes?: number; futureToleranceMs?: number; pastToleranceMs?: number; flushIntervalMs?: number }
  /**
   * Told of background failures (stats flushes, forwarding heartbeats and adoption, a storage
   * that cannot start). Requests report their own failures in their answers.
   * @default console.warn
   */
  onError?: (error: unknown) => void
  /**
   * Where environment defaults are read from.
   * @default process.env
   */
  env?: Record<string, string | undefined>
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
  checkOptions(options)
  const env = options.env ?? process.env
  const model: EventModel<any> = options.model ?? createEventModel({ events: options.events, sourcePolicy: options.sourcePolicy, limits: options.limits })
  const instanceId = options.instanceId ?? `${hostname().replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 40)}_${process.pid}_${randomBytes(3).toString('hex')}`
  const timeoutMs = options.storageTimeoutMs ?? 5000
  const dedupeWindowMs = options.dedupeWindowMs ?? 86_400_000
  const retryAfterSeconds = options.retryAfterSeconds ?? 2
  const retentionMs = options.retentionMs
  const pruneIntervalMs = options.pruneIntervalMs ?? 3_600_000
  const refusalDrain: Readonly<RefusalDrain> = Object.freeze({
    maxBytes: options.refusalDrain?.maxBytes ?? 1_048_576,
    maxMs: options.refusalDrain?.maxMs ?? 2000,
  })
  if (retentionMs !== undefined && retentionMs < dedupeWindowMs) {
    throw new RangeError(`[event-ingest] retentionMs (${retentionMs}) must be at least dedupeWindowMs (${dedupeWindowMs}): events retried after their batch is deleted would be stored again`)
  }
  const onError = options.onError ?? warn
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
  // EVENT_STORAGE is checked now, naming the variable, so a typo fails at start, not on the first
  // request (the storage option is checked with the others).
  const storageOption = options.storage ?? env.EVENT_STORAGE
  if (options.storage === undefined && env.EVENT_STORAGE !== undefined) checkEnv('EVENT_STORAGE', () => checkStorageOption(env.EVENT_STORAGE))
  const tokens = tokensFrom('token', options.token, env.EVENT_INGEST_TOKEN, 'EVENT_INGEST_TOKEN')
  const adminTokens = tokensFrom('adminToken', options.adminToken, env.EVENT_ADMIN_TOKEN, 'EVENT_ADMIN_TOKEN')
  let storage: Storage | undefined
  let log: EventLog | undefined
  let stats: StatsWindow | undefined
  let forwarder: Forwarder | undefined
  const sinkOption = options.sink === undefined ? env.EVENT_SINK_URL || undefined : options.sink || undefined
  // A copy: the caller's object is never written to.
  const sink: SinkOptions | undefined = typeof sinkOption === 'string' ? { url: sinkOption } : sinkOption ? { ...sinkOption } : undefined
  if (sink) {
    if (options.sink === undefined) checkEnv('EVENT_SINK_URL', () => checkSinkOptions(sink))
    else checkSinkOptions(sink)
    sink.token ??= env.EVENT_SINK_TOKEN || undefined
  }
  let owned = false
  let closed = false
  // Set once everything above is in place: the hot path then skips awaiting readiness.
  let started = false

  const readyPromise = (async () => {
    const resolved = await resolveStorage(storageOption, env, { onUnreachable: report })
    storage = resolved.storage
    owned = resolved.owned
    unreachable = resolved.unreachable
    log = createEventLog({
      storage,
      instanceId,
      dedupeWindowMs,
      timeoutMs,
      outbox: sink !== undefined,
      maxEvents: resolved.maxEvents,
      maxBytes: resolved.maxBytes,
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
    stats = createStatsWindow({ ...options.stats, storage, instanceId, onError: reportBackground })
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
      appended = await log!.append(batch.events as EventEnvelope[], receivedAt, batch.raw === undefined
        ? undefined
        : { text: batch.raw, bytes: batch.rawBytes, owned: batch.rawBytesOwned })
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
    tokens,
    adminTokens,
    authorize: options.authorize,
    retryAfterSeconds,
    cors: options.cors,
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
    refusalDrain,
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

/** The default `onError`: one line on the console, prefixed once. */
function warn(error: unknown): void {
  console.warn(`[event-ingest] ${withoutPrefix(error instanceof Error ? error.message : String(error))}`)
}

function withoutPrefix(message: string): string {
  return message.replace(/^\[event-ingest\] /, '')
}

/** Runs a check of a value read from the environment, naming the variable in its error. */
function checkEnv(variable: string, check: () => void): void {
  try {
    check()
  } catch (error) {
    const Type = error instanceof RangeError ? RangeError : TypeError
    throw new Type(`[event-ingest] ${variable}: ${withoutPrefix((error as Error).message)}`, { cause: error })
  }
}

/**
 * Checks every option's value when the core is created (see the README's option tables): a bad
 * one throws a TypeError or RangeError naming it, instead of failing later on a request or timer.
 * The model, limits and event definitions are checked by `createEventModel`, the sink by
 * `checkSinkOptions`.
 */
/** The options {@link createEventIngest} knows, each checked below. */
const optionNames = ['model', 'events', 'sourcePolicy', 'limits', 'storage', 'token', 'adminToken', 'authorize', 'dedupeWindowMs', 'retentionMs', 'pruneIntervalMs', 'storageTimeoutMs', 'retryAfterSeconds', 'refusalDrain', 'instanceId', 'sink', 'cors', 'stats', 'onError', 'env'] as const satisfies readonly (keyof EventIngestOptions)[]

// Every option of EventIngestOptions is in optionNames (a new option left out fails to compile).
const everyOptionNamed: Record<Exclude<keyof EventIngestOptions, (typeof optionNames)[number]>, never> = {}
void everyOptionNamed

function checkOptions(options: EventIngestOptions<any, any>): void {
  checkObject('options', options)
  checkKeys('options', options, optionNames)
  if (options.model !== undefined) {
    const model = options.model as Partial<EventModel<any>> | null
    if (typeof model !== 'object' || model === null || typeof model.validateBatch !== 'function' || typeof model.describe !== 'function') {
      throw new TypeError(`[event-ingest] model must be made by createEventModel(), got ${shown(options.model)}`)
    }
    if (options.events || options.sourcePolicy || options.limits) {
      throw new TypeError('[event-ingest] pass events, sourcePolicy and limits to createEventModel() when you give a model')
    }
  }
  checkObject('events', options.events)
  checkObject('limits', options.limits)
  checkStorageOption(options.storage)
  checkTokens('token', options.token)
  checkTokens('adminToken', options.adminToken)
  checkFunction('authorize', options.authorize)
  checkFunction('onError', options.onError)
  checkObject('env', options.env)
  checkNumber('dedupeWindowMs', options.dedupeWindowMs)
  checkNumber('retentionMs', options.retentionMs)
  // Node runs a longer timer after 1 ms, which would prune without pause or time out at once.
  checkNumber('pruneIntervalMs', options.pruneIntervalMs, { max: MAX_TIMER_MS })
  checkNumber('storageTimeoutMs', options.storageTimeoutMs, { max: MAX_TIMER_MS })
  // Retry-After carries whole seconds.
  checkNumber('retryAfterSeconds', options.retryAfterSeconds, { integer: true })
  if (options.retentionMs === undefined && options.pruneIntervalMs !== undefined) {
    throw new TypeError('[event-ingest] pruneIntervalMs is set but retentionMs is not: nothing would be pruned')
  }
  if (options.instanceId !== undefined && (typeof options.instanceId !== 'string' || !/^[A-Za-z0-9_.]{1,64}$/.test(options.instanceId))) {
    throw new TypeError(`[event-ingest] instanceId must be 1-64 letters, digits, "_" or ".", got ${shown(options.instanceId)}`)
  }
  const sink = options.sink
  if (sink !== undefined && sink !== false && typeof sink !== 'string' && (typeof sink !== 'object' || sink === null || Array.isArray(sink))) {
    throw new TypeError(`[event-ingest] sink must be a URL, { url, ... } or false, got ${shown(sink)}`)
  }
  const cors = options.cors
  checkObject('cors', cors)
  checkKeys('cors', cors, ['origin', 'maxAge'])
  if (cors) {
    const origin = cors.origin as unknown
    if (origin !== '*' && typeof origin !== 'function' && !(Array.isArray(origin) && origin.every((o) => typeof o === 'string'))) {
      throw new TypeError(`[event-ingest] cors.origin must be '*', an array of origins or a function, got ${shown(origin)}`)
    }
    checkNumber('cors.maxAge', cors.maxAge, { integer: true, zero: true })
  }
  const drain = options.refusalDrain
  checkObject('refusalDrain', drain)
  checkKeys('refusalDrain', drain, ['maxBytes', 'maxMs'])
  if (drain) {
    checkNumber('refusalDrain.maxBytes', drain.maxBytes)
    checkNumber('refusalDrain.maxMs', drain.maxMs, { max: MAX_TIMER_MS })
  }
  const stats = options.stats
  checkObject('stats', stats)
  checkKeys('stats', stats, ['windowMinutes', 'futureToleranceMs', 'pastToleranceMs', 'flushIntervalMs'])
  if (stats) {
    checkNumber('stats.windowMinutes', stats.windowMinutes, { integer: true })
    checkNumber('stats.futureToleranceMs', stats.futureToleranceMs, { zero: true })
    checkNumber('stats.flushIntervalMs', stats.flushIntervalMs, { zero: true, max: MAX_TIMER_MS })
    const pastToleranceMs = stats.pastToleranceMs as unknown
    if (pastToleranceMs !== undefined && !(typeof pastToleranceMs === 'number' && pastToleranceMs >= 0)) {
      throw new (typeof pastToleranceMs === 'number' ? RangeError : TypeError)(`[event-ingest] stats.pastToleranceMs must be a number >= 0 (Infinity keeps every past event in lag), got ${shown(pastToleranceMs)}`)
    }
  }
}

/** Tokens from an option or its variable; a variable that is set but holds no token is a mistake, not "open". */
function tokensFrom(name: string, option: string | readonly string[] | undefined, variable: string | undefined, variableName: string): string[] {
  const tokens = parseTokens(option ?? variable)
  if (tokens.length === 0 && (option !== undefined || (variable !== undefined && variable !== ''))) {
    throw new TypeError(`[event-ingest] ${option !== undefined ? name : variableName} is set but holds no token; unset it to leave the route open`)
  }
  return tokens
}
