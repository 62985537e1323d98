import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { parseTokens } from '../http/auth'
import { checkPublishableKeys, parsePublishableKeysVariable, type PublishableKey } from '../http/keys'
import type { EventDefinitions, SourcePolicy } from '../model/definitions'
import { DEFAULT_CORS_MAX_AGE } from '../http/handler'
import { resolveSinkOptions, sinkDefaults, type ResolvedSinkOptions, type SinkOptions } from '../forward/options'
import type { Limits } from '../model/limits'
import type { ClockSkewSettings } from '../model/skew'
import { cloudEventsMapping, type CloudEventsSourceMap } from '../model/cloudevents'
import type { BatchMapping } from '../model/validate'
import { eventSources } from '../model/definitions'
import { createRedactor, type Redactor } from '../model/redact'
import { createEventModel, type EventModel } from '../model/model'
import { checkFunction, checkKeys, checkNumber, checkObject, checkStore, checkTokens, MAX_TIMER_MS, shown, withoutPrefix } from '../base/option-checks'
import { statsDefaults } from '../stats/stats'
import { resolveMetricsOptions, type MetricsOptions, type ResolvedMetricsOptions } from '../metrics/options'
import { checkStorageOption, type StorageOption } from '../storage/resolve'
import type { AtomicBatchStore } from '../storage/atomic'
import type { CorsOptions, IngestHttpRequest, RefusalDrain } from './types'
import { resolveRateLimits, type RateLimitOptions, type ResolvedRateLimits } from '../http/rate-limits'

// The options of the core, resolved once: every check, every environment variable and every
// default, in one synchronous pass with no I/O, into one frozen object the core then reads.

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
   * Your own one-step batch write (a SQL transaction, a Redis script), in place of the one
   * event-ingest picks for `storage`; records, outbox entries and claims are read back through
   * `storage`. See the README's "Your own store".
   */
  store?: AtomicBatchStore
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
  /**
   * Keys a browser may hold (`navigator.sendBeacon` cannot send `x-event-token`): sent as `?key=`
   * or in the body (`{ "key": "pk_…", "events": [...] }`), each limited to its `sources` and
   * `origins`. With keys set, ingest is no longer open: a request needs a token or a key.
   * @default process.env.EVENT_PUBLISHABLE_KEYS (a JSON array of the same objects); none
   */
  publishableKeys?: readonly PublishableKey[]
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
   * Clock-skew correction from the producer's send time (header `x-event-sent-at`, or `sentAt` in
   * the query string for beacons): past `toleranceMs` either way, stored events gain
   * `correctedOccurredAt` and lag is counted from it; a `sentAt` beyond `maxMs` (or not a
   * timestamp, or before an event of its batch occurred) is ignored and counted. `false`: send
   * times are not read.
   * @default { toleranceMs: 60_000, maxMs: 31_622_400_000 } (one minute; 366 days)
   */
  clockSkew?: Partial<ClockSkewSettings> | false
  /**
   * How CloudEvents received on ingest (`application/cloudevents+json`,
   * `application/cloudevents-batch+json`) map to envelopes. `source` turns a CloudEvent's `source`
   * URI-reference into the envelope's source: a function (undefined rejects the event naming
   * `source`) or a record of CloudEvents source to envelope source.
   * @default { source: the value itself when it is one of the sources, else its last path segment when that is one }
   */
  cloudEvents?: { source?: CloudEventsSourceMap }
  /**
   * PII redaction (the rules are the model's: `redact` of `createEventModel` and of each
   * definition). `secret` keys the HMAC-SHA-256 of `hash` rules, at least 32 bytes; required when
   * the model has one, never published. Keep it stable: pseudonyms made under another secret do
   * not join.
   * @default { secret: process.env.EVENT_REDACTION_SECRET }
   */
  redaction?: { secret?: string }
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
  /**
   * Rate limits of the ingest route, answered with 429 and `Retry-After`: requests per client
   * address and per token, events per source. Counted in Redis on a Redis storage (shared by every
   * instance), else in this process. Needs the `rate-limiter-flexible` package. See the README's
   * "Rate limits".
   * @default none; `trustProxy: false`
   */
  rateLimits?: RateLimitOptions | false
  /**
   * Prometheus metrics (needs the `prom-client` package): `GET /admin/metrics`, `metrics()` and
   * `metricsHandler`. `true` takes every default; see the README's "Metrics".
   * @default process.env.EVENT_METRICS (`1`/`true`); off
   */
  metrics?: boolean | MetricsOptions
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
 * The default of every option of {@link createEventIngest} that has one, each written here once,
 * or referenced here from the module that applies it (the stats window's, the sink's, CORS's).
 * The limits' defaults are `defaultLimits`, the memory storage's bounds `DEFAULT_MEMORY_MAX_*`.
 */
export const defaults = Object.freeze({
  storage: 'memory:',
  dedupeWindowMs: 86_400_000,
  pruneIntervalMs: 3_600_000,
  storageTimeoutMs: 5000,
  retryAfterSeconds: 2,
  refusalDrain: Object.freeze({ maxBytes: 1_048_576, maxMs: 2000 }) satisfies Readonly<RefusalDrain>,
  clockSkew: Object.freeze({ toleranceMs: 60_000, maxMs: 31_622_400_000 }) satisfies ClockSkewSettings,
  corsMaxAge: DEFAULT_CORS_MAX_AGE,
  rateLimits: Object.freeze({ trustProxy: false }),
  stats: statsDefaults,
  sink: sinkDefaults,
})

/** The stats settings of the core, each defaulted. */
export interface ResolvedStatsOptions {
  readonly windowMinutes: number
  readonly futureToleranceMs: number
  readonly pastToleranceMs: number
  readonly flushIntervalMs: number
}

/** {@link EventIngestOptions} checked, read from the environment where unset, and defaulted; frozen. */
export interface ResolvedOptions<D extends EventDefinitions = any> {
  readonly model: EventModel<D>
  /** The storage option in force: the option, else `EVENT_STORAGE`, else `'memory:'`. */
  readonly storage: StorageOption
  /** Unset: the log picks the write strategy the storage allows. */
  readonly store: AtomicBatchStore | undefined
  /** Ingest tokens; empty: ingest is open. */
  readonly tokens: readonly string[]
  /** Admin tokens; empty: admin routes need `authorize`. */
  readonly adminTokens: readonly string[]
  /** Publishable keys; empty: none. */
  readonly publishableKeys: readonly PublishableKey[]
  readonly authorize: ((request: IngestHttpRequest) => boolean | Promise<boolean>) | undefined
  readonly dedupeWindowMs: number
  /** Unset: batches are kept until `prune` is called. */
  readonly retentionMs: number | undefined
  readonly pruneIntervalMs: number
  readonly storageTimeoutMs: number
  readonly retryAfterSeconds: number
  readonly refusalDrain: Readonly<RefusalDrain>
  /** Unset: send times are not read. */
  readonly clockSkew: ClockSkewSettings | undefined
  /** How CloudEvents bodies are read as envelopes. */
  readonly cloudEvents: BatchMapping
  /** The model's redaction rules under the secret; unset: the model has none. */
  readonly redaction: Redactor | undefined
  readonly instanceId: string
  /** Unset: no forwarding. */
  readonly sink: ResolvedSinkOptions | undefined
  readonly cors: Readonly<Required<CorsOptions>> | undefined
  /** Unset: no rate limits. */
  readonly rateLimits: ResolvedRateLimits | undefined
  readonly stats: ResolvedStatsOptions
  /** Unset: no metrics. */
  readonly metrics: ResolvedMetricsOptions | undefined
  readonly onError: (error: unknown) => void
  /** Where environment defaults were read from (`REDIS_URL` is read from it when storage starts). */
  readonly env: Record<string, string | undefined>
}

/**
 * Resolves the options of {@link createEventIngest}: checks each (a bad one throws a TypeError or
 * RangeError naming it, or naming the variable it was read from), reads the environment for the
 * options left unset, fills in every default and returns one frozen object. Synchronous and
 * without I/O: nothing is connected, created on disk or timed. The only value not derived from
 * its arguments is a default `instanceId`, made by `makeInstanceId` (host name, pid and random
 * bytes, unless another is passed) and only when `options.instanceId` is unset.
 *
 * @param env where environment defaults are read from when `options.env` is unset.
 * @example
 * const resolved = resolveOptions({ storageTimeoutMs: 1000 }, { EVENT_INGEST_TOKEN: 'a,b' })
 * resolved.tokens // → ['a', 'b']
 * resolved.dedupeWindowMs // → 86_400_000
 */
export function resolveOptions<D extends EventDefinitions = any>(
  options: EventIngestOptions<any, D>,
  env: Record<string, string | undefined> = {},
  makeInstanceId: () => string = defaultInstanceId,
): ResolvedOptions<D> {
  checkOptions(options)
  const environment = options.env ?? env
  const model = (options.model ?? createEventModel({ events: options.events, sourcePolicy: options.sourcePolicy, limits: options.limits })) as EventModel<D>
  const instanceId = options.instanceId ?? makeInstanceId()
  const dedupeWindowMs = options.dedupeWindowMs ?? defaults.dedupeWindowMs
  const retentionMs = options.retentionMs
  if (retentionMs !== undefined && retentionMs < dedupeWindowMs) {
    throw new RangeError(`[event-ingest] retentionMs (${retentionMs}) must be at least dedupeWindowMs (${dedupeWindowMs}): events retried after their batch is deleted would be stored again`)
  }
  // EVENT_STORAGE is checked now, naming the variable, so a typo fails at start, not on the first
  // request (the storage option is checked with the others).
  if (options.storage === undefined && environment.EVENT_STORAGE !== undefined) checkEnv('EVENT_STORAGE', () => checkStorageOption(environment.EVENT_STORAGE))
  const storage = options.storage ?? environment.EVENT_STORAGE ?? defaults.storage
  const tokens = tokensFrom('token', options.token, environment.EVENT_INGEST_TOKEN, 'EVENT_INGEST_TOKEN')
  const adminTokens = tokensFrom('adminToken', options.adminToken, environment.EVENT_ADMIN_TOKEN, 'EVENT_ADMIN_TOKEN')
  const keysVariable = environment.EVENT_PUBLISHABLE_KEYS
  const publishableKeys = options.publishableKeys !== undefined || !keysVariable
    ? checkPublishableKeys('publishableKeys', options.publishableKeys, tokens)
    : checkPublishableKeys('EVENT_PUBLISHABLE_KEYS', parsePublishableKeysVariable('EVENT_PUBLISHABLE_KEYS', keysVariable), tokens)
  const sinkOption = options.sink === undefined ? environment.EVENT_SINK_URL || undefined : options.sink || undefined
  let sink: ResolvedSinkOptions | undefined
  if (sinkOption) {
    const spec: SinkOptions = typeof sinkOption === 'string' ? { url: sinkOption } : sinkOption
    const sinkToken = environment.EVENT_SINK_TOKEN || undefined
    sink = options.sink === undefined ? checkEnv('EVENT_SINK_URL', () => resolveSinkOptions(spec, sinkToken, environment)) : resolveSinkOptions(spec, sinkToken, environment)
  }
  const stats = options.stats
  const redaction = redactorOf(model, options.redaction?.secret, environment.EVENT_REDACTION_SECRET)
  return Object.freeze({
    model,
    storage,
    store: options.store,
    tokens: Object.freeze(tokens),
    adminTokens: Object.freeze(adminTokens),
    publishableKeys,
    authorize: options.authorize,
    dedupeWindowMs,
    retentionMs,
    pruneIntervalMs: options.pruneIntervalMs ?? defaults.pruneIntervalMs,
    storageTimeoutMs: options.storageTimeoutMs ?? defaults.storageTimeoutMs,
    retryAfterSeconds: options.retryAfterSeconds ?? defaults.retryAfterSeconds,
    clockSkew: options.clockSkew === false ? undefined : Object.freeze({
      toleranceMs: options.clockSkew?.toleranceMs ?? defaults.clockSkew.toleranceMs,
      maxMs: options.clockSkew?.maxMs ?? defaults.clockSkew.maxMs,
    }),
    redaction,
    refusalDrain: Object.freeze({
      maxBytes: options.refusalDrain?.maxBytes ?? defaults.refusalDrain.maxBytes,
      maxMs: options.refusalDrain?.maxMs ?? defaults.refusalDrain.maxMs,
    }),
    cloudEvents: cloudEventsMapping(options.cloudEvents?.source),
    instanceId,
    sink,
    cors: options.cors && Object.freeze({ origin: options.cors.origin, maxAge: options.cors.maxAge ?? defaults.corsMaxAge }),
    rateLimits: resolveRateLimits(options.rateLimits, tokens.length === 0, defaults.rateLimits, publishableKeys.length > 0),
    stats: Object.freeze({
      windowMinutes: stats?.windowMinutes ?? statsDefaults.windowMinutes,
      futureToleranceMs: stats?.futureToleranceMs ?? statsDefaults.futureToleranceMs,
      pastToleranceMs: stats?.pastToleranceMs ?? statsDefaults.pastToleranceMs,
      flushIntervalMs: stats?.flushIntervalMs ?? statsDefaults.flushIntervalMs,
    }),
    metrics: options.metrics === undefined ? checkEnv('EVENT_METRICS', () => resolveMetricsOptions(undefined, environment.EVENT_METRICS)) : resolveMetricsOptions(options.metrics, undefined),
    onError: options.onError ?? warn,
    env: environment,
  })
}

/**
 * The default `instanceId`: `host_pid_random`, the host name cut to letters, digits, `_` and `.`
 * (the characters a storage key segment allows). Not pure: it reads the host name and the pid and
 * draws 3 random bytes, so two processes on one host never share an id.
 */
export function defaultInstanceId(): string {
  return `${hostname().replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 40)}_${process.pid}_${randomBytes(3).toString('hex')}`
}

/** The default `onError`: one line on the console, prefixed once. */
function warn(error: unknown): void {
  console.warn(`[event-ingest] ${withoutPrefix(error instanceof Error ? error.message : String(error))}`)
}

/** Runs a check of a value read from the environment, naming the variable in its error. */
function checkEnv<T>(variable: string, check: () => T): T {
  try {
    return check()
  } catch (error) {
    const Type = error instanceof RangeError ? RangeError : TypeError
    throw new Type(`[event-ingest] ${variable}: ${withoutPrefix((error as Error).message)}`, { cause: error })
  }
}

/** The options {@link createEventIngest} knows, each checked below. */
const optionNames = ['model', 'events', 'sourcePolicy', 'limits', 'storage', 'store', 'token', 'adminToken', 'publishableKeys', 'authorize', 'dedupeWindowMs', 'retentionMs', 'pruneIntervalMs', 'storageTimeoutMs', 'retryAfterSeconds', 'refusalDrain', 'clockSkew', 'cloudEvents', 'redaction', 'instanceId', 'sink', 'cors', 'rateLimits', 'metrics', 'stats', 'onError', 'env'] as const satisfies readonly (keyof EventIngestOptions)[]

// Every option of EventIngestOptions is in optionNames (a new option left out fails to compile).
const everyOptionNamed: Record<Exclude<keyof EventIngestOptions, (typeof optionNames)[number]>, never> = {}
void everyOptionNamed

/**
 * Checks every option's value when the core is created (see the README's option tables): a bad
 * one throws a TypeError or RangeError naming it, instead of failing later on a request or timer.
 * The model, limits and event definitions are checked by `createEventModel`, the sink by
 * `resolveSinkOptions`.
 */
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
  checkStore('store', options.store)
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
  const skew = options.clockSkew
  if (skew !== false) {
    checkObject('clockSkew', skew)
    checkKeys('clockSkew', skew, ['toleranceMs', 'maxMs'])
    if (skew) {
      checkNumber('clockSkew.toleranceMs', skew.toleranceMs, { zero: true })
      checkNumber('clockSkew.maxMs', skew.maxMs)
      const toleranceMs = skew.toleranceMs ?? defaults.clockSkew.toleranceMs
      const maxMs = skew.maxMs ?? defaults.clockSkew.maxMs
      if (maxMs < toleranceMs) throw new RangeError(`[event-ingest] clockSkew.maxMs must be at least clockSkew.toleranceMs (${toleranceMs}), got ${maxMs}`)
    }
  }
  const cloudEvents = options.cloudEvents
  checkObject('cloudEvents', cloudEvents)
  checkKeys('cloudEvents', cloudEvents, ['source'])
  const ceSource = cloudEvents?.source as unknown
  if (ceSource !== undefined && typeof ceSource !== 'function') {
    if (typeof ceSource !== 'object' || ceSource === null || Array.isArray(ceSource)) {
      throw new TypeError(`[event-ingest] cloudEvents.source must be a function or a record of CloudEvents source to envelope source, got ${shown(ceSource)}`)
    }
    for (const [key, value] of Object.entries(ceSource as object)) {
      if (!(eventSources as readonly unknown[]).includes(value)) {
        throw new RangeError(`[event-ingest] cloudEvents.source[${JSON.stringify(key)}] must be one of ${eventSources.join(', ')}, got ${shown(value)}`)
      }
    }
  }
  checkObject('redaction', options.redaction)
  checkKeys('redaction', options.redaction, ['secret'])
  if (options.redaction?.secret !== undefined) checkSecret('redaction.secret', options.redaction.secret)
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

/** An HMAC key shorter than this is refused: the hash of a guessable value is as strong as its key. */
export const MIN_REDACTION_SECRET_BYTES = 32

function checkSecret(name: string, value: unknown): void {
  if (typeof value !== 'string') throw new TypeError(`[event-ingest] ${name} must be a string, got ${shown(value)}`)
  const bytes = Buffer.byteLength(value)
  if (bytes < MIN_REDACTION_SECRET_BYTES) throw new RangeError(`[event-ingest] ${name} must be at least ${MIN_REDACTION_SECRET_BYTES} bytes (a random key, such as 32 random bytes in hex), got ${bytes}`)
}

/** The model's redactor under the secret of the option or its variable; a model that hashes needs one. */
function redactorOf(model: EventModel<any>, option: string | undefined, variable: string | undefined): Redactor | undefined {
  const plan = model.redaction
  if (!plan || plan.byEvent.size === 0) return undefined
  let secret = option
  if (secret === undefined && variable !== undefined && variable !== '') {
    checkEnv('EVENT_REDACTION_SECRET', () => checkSecret('the secret', variable))
    secret = variable
  }
  if (plan.hashes && secret === undefined) {
    const hashed = [...plan.byEvent].flatMap(([name, rules]) => rules.filter((r) => r.action === 'hash').map((r) => `${name} ${r.path}`))
    throw new TypeError(`[event-ingest] redaction.secret is required: the model pseudonymises ${hashed.slice(0, 3).join(', ')}${hashed.length > 3 ? ', …' : ''} with HMAC-SHA-256; set redaction.secret or EVENT_REDACTION_SECRET (at least ${MIN_REDACTION_SECRET_BYTES} bytes)`)
  }
  return createRedactor(plan, { secret })
}
