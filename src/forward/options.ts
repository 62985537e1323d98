import { checkBoolean, checkFunction, checkNumber, checkObject, checkString, MAX_TIMER_MS, shown } from '../base/option-checks'
import { defaultForwardSource } from '../model/cloudevents'

/** What a host's `deliver` function is given: one sink request's events. */
export interface DeliverBatch {
  /** The request's idempotency key: the same on every retry of the same batches. */
  key: string
  /** The events, as stored (the ingest envelope). */
  events: readonly Record<string, unknown>[]
  /** The same events as one JSON array. */
  body: string
  /** This attempt's number: 1 for the first. */
  attempt: number
}

/** The kinds of sink: `http` (`POST`), Redis Streams (`XADD`), NATS JetStream (publish), or a host's function. */
export type SinkType = 'http' | 'redis-stream' | 'nats' | 'deliver'

/**
 * Where and how accepted batches are forwarded. `url` is required for `http` and `redis-stream`
 * sinks; `deliver` for `deliver` sinks; every other field has a default.
 */
export interface SinkOptions {
  /**
   * The kind of sink.
   * @default from the URL's scheme: `redis:`/`rediss:` is `redis-stream`, `nats:` is `nats`; with `deliver` set, `deliver`; else `http`
   */
  type?: SinkType
  /**
   * The sink's URL. `http`: it receives `POST` with a JSON array of events (the ingest envelope).
   * `redis-stream`: `redis://host:port/db`, with the stream as fragment (`#events`) unless `stream`
   * is given. `nats`: `nats://host:port`, with the subject as fragment unless `subject` is given.
   * @default for `nats`: process.env.NATS_URL, else nats://127.0.0.1:4222
   */
  url?: string
  /** `redis-stream`: the stream key. @default the URL's fragment */
  stream?: string
  /** `redis-stream`: approximate cap on the stream's entries (`XADD … MAXLEN ~`); 0: no cap. @default 1_000_000 */
  maxLen?: number
  /** `redis-stream`: also trim entries older than this, in ms (`XADD … MINID ~`); 0: no trim by age. @default 0 */
  maxAgeMs?: number
  /**
   * `redis-stream`: how long a batch's idempotency key is remembered, in ms: a redelivery within
   * it is not appended again.
   * @default 86_400_000
   */
  idempotencyWindowMs?: number
  /** `nats`: the subject each batch is published on. @default the URL's fragment */
  subject?: string
  /**
   * `nats`: a JetStream stream to create on the subject when none captures it (a stream that
   * exists is left as it is). Unset: the stream must exist, and a publish without one is retried.
   */
  createStream?: string
  /**
   * `deliver`: the host's function. Resolves: delivered. Throws: retried with backoff. Throws a
   * {@link SinkRefusal}: refused for good (a dead letter). Throws a {@link SinkRetry}: retried
   * after its delay.
   */
  deliver?: (batch: DeliverBatch) => Promise<unknown> | unknown
  /** Credential sent to the sink. @default process.env.EVENT_SINK_TOKEN */
  token?: string
  /**
   * Header carrying `token`: `authorization` sends `Bearer <token>`, any other name the raw token.
   * @default 'authorization'
   */
  tokenHeader?: string
  /** Extra headers for every sink request. */
  headers?: Record<string, string>
  /**
   * Time limit of one attempt, in ms (a fresh one per attempt).
   * @default 10_000
   */
  timeoutMs?: number
  /** First retry delay, in ms; doubles per attempt, with full jitter. @default 500 */
  minBackoffMs?: number
  /** Longest retry delay, in ms. @default 60_000 */
  maxBackoffMs?: number
  /** Longest `Retry-After` honoured, in ms. @default 600_000 */
  maxRetryAfterMs?: number
  /** Most events in one sink request (small ingests are combined). @default 1000 */
  maxBatchEvents?: number
  /** Most bytes in one sink request. @default 1_048_576 */
  maxBatchBytes?: number
  /** How long a delivery lease lasts, in ms; a crashed holder's batches are picked up after it. @default 3 × timeoutMs + 5000 */
  leaseMs?: number
  /** How often instances announce themselves and adopt the outbox of dead ones, in ms. @default 10_000 */
  heartbeatMs?: number
  /** Make each ingest wait until its batch reached the sink (or `waitTimeoutMs` passed). @default false */
  wait?: boolean
  /** @default 10_000 */
  waitTimeoutMs?: number
  /**
   * What the sink receives: `'envelope'`, a JSON array of envelopes (`application/json`, as the
   * ingest route takes them), or `'cloudevents'`, a CloudEvents batch
   * (`application/cloudevents-batch+json`), each envelope mapped back to a CloudEvent.
   * @default 'envelope'
   */
  format?: 'envelope' | 'cloudevents'
  /**
   * With `format: 'cloudevents'`: the CloudEvents `source` of a stored envelope.
   * @default the source the event was received with as a CloudEvent, else `/<source>` (`/storefront`)
   */
  cloudEventsSource?: (event: Record<string, unknown>) => string
  /** Most replays running at once (`replay()` refuses another with 409 `too_many_replays`). @default 2 */
  maxReplays?: number
  /** Most replay batches of one replay in the outbox and not yet settled at once; the replay's scan waits below it. @default 100 */
  maxReplayInFlight?: number
}

/** The default of every sink field that has one (`leaseMs` follows `timeoutMs`: see {@link resolveSinkOptions}). */
export const sinkDefaults = Object.freeze({
  tokenHeader: 'authorization',
  timeoutMs: 10_000,
  minBackoffMs: 500,
  maxBackoffMs: 60_000,
  maxRetryAfterMs: 600_000,
  maxBatchEvents: 1000,
  maxBatchBytes: 1_048_576,
  heartbeatMs: 10_000,
  maxReplays: 2,
  maxReplayInFlight: 100,
  wait: false,
  waitTimeoutMs: 10_000,
  format: 'envelope' as 'envelope' | 'cloudevents',
  cloudEventsSource: defaultForwardSource as (event: Record<string, unknown>) => string,
  maxLen: 1_000_000,
  maxAgeMs: 0,
  idempotencyWindowMs: 86_400_000,
})

/** Sink options checked, with every default in place (`token` stays unset when none is given). */
export type ResolvedSinkOptions = Readonly<
  Required<Omit<SinkOptions, 'token' | 'headers' | 'url' | 'stream' | 'subject' | 'createStream' | 'deliver'>> & {
    /** The sink's URL (`deliver:` for a host's function). */
    url: string
    token?: string
    headers: Readonly<Record<string, string>>
    stream?: string
    subject?: string
    createStream?: string
    deliver?: SinkOptions['deliver']
  }
>

/**
 * Checks sink options and fills in their defaults, into a new frozen object (the one given is
 * never written to). `token` is used when the options carry none.
 */
export function resolveSinkOptions(sink: SinkOptions, token?: string, env: Record<string, string | undefined> = process.env): ResolvedSinkOptions {
  const { leaseMs } = checkSinkOptions(sink)
  const target = checkTarget(sink, env)
  return Object.freeze({
    ...sinkDefaults,
    ...definedFields(sink),
    ...target,
    headers: Object.freeze({ ...sink.headers }),
    token: sink.token ?? token,
    leaseMs,
  })
}

/** The fields that are set: a field given as `undefined` takes its default. */
function definedFields<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>
}

/** Checks sink options up front; returns the lease length in force. */
function checkSinkOptions(sink: SinkOptions): { leaseMs: number } {
  for (const name of ['maxLen', 'maxAgeMs'] as const) checkNumber(`sink.${name}`, sink[name], { integer: true, zero: true })
  checkNumber('sink.idempotencyWindowMs', sink.idempotencyWindowMs, { integer: true })
  for (const name of ['timeoutMs', 'minBackoffMs', 'maxBackoffMs', 'maxRetryAfterMs', 'leaseMs', 'heartbeatMs', 'waitTimeoutMs'] as const) {
    checkNumber(`sink.${name}`, sink[name], { max: MAX_TIMER_MS })
  }
  for (const name of ['maxBatchEvents', 'maxBatchBytes', 'maxReplays', 'maxReplayInFlight'] as const) checkNumber(`sink.${name}`, sink[name], { integer: true })
  checkString('sink.token', sink.token)
  checkBoolean('sink.wait', sink.wait)
  if (sink.format !== undefined && sink.format !== 'envelope' && sink.format !== 'cloudevents') {
    throw new TypeError(`[event-ingest] sink.format must be 'envelope' or 'cloudevents', got ${shown(sink.format)}`)
  }
  checkFunction('sink.cloudEventsSource', sink.cloudEventsSource)
  if (sink.tokenHeader !== undefined && (typeof sink.tokenHeader !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(sink.tokenHeader))) {
    throw new TypeError(`[event-ingest] sink.tokenHeader must be a header name, got ${shown(sink.tokenHeader)}`)
  }
  checkObject('sink.headers', sink.headers)
  for (const [name, value] of Object.entries(sink.headers ?? {})) {
    if (typeof value !== 'string') throw new TypeError(`[event-ingest] sink.headers[${JSON.stringify(name)}] must be a string, got ${shown(value)}`)
  }
  const timeoutMs = sink.timeoutMs ?? sinkDefaults.timeoutMs
  const leaseMs = sink.leaseMs ?? timeoutMs * 3 + 5000
  if (leaseMs <= timeoutMs) {
    // An attempt that outlives its lease could be made again by another instance at the same time.
    throw new TypeError(`[event-ingest] sink.leaseMs (${leaseMs}) must be longer than sink.timeoutMs (${timeoutMs})`)
  }
  return { leaseMs }
}

/** The sink's type and where it is, checked: every type's required fields named when missing. */
function checkTarget(sink: SinkOptions, env: Record<string, string | undefined>): Pick<ResolvedSinkOptions, 'type' | 'url' | 'stream' | 'subject' | 'createStream' | 'deliver'> {
  const types: readonly SinkType[] = ['http', 'redis-stream', 'nats', 'deliver']
  if (sink.type !== undefined && !types.includes(sink.type)) {
    throw new TypeError(`[event-ingest] sink.type must be one of ${types.map((t) => `'${t}'`).join(', ')}, got ${shown(sink.type)}`)
  }
  checkString('sink.url', sink.url)
  for (const name of ['stream', 'subject', 'createStream'] as const) {
    checkString(`sink.${name}`, sink[name])
    if (sink[name] === '') throw new TypeError(`[event-ingest] sink.${name} must not be empty`)
  }
  checkFunction('sink.deliver', sink.deliver)
  const scheme = typeof sink.url === 'string' ? /^([a-z]+):/i.exec(sink.url)?.[1]?.toLowerCase() : undefined
  const type: SinkType = sink.type ?? (scheme === 'redis' || scheme === 'rediss' ? 'redis-stream' : scheme === 'nats' ? 'nats' : sink.deliver ? 'deliver' : 'http')
  if (type !== 'deliver' && sink.deliver !== undefined) throw new TypeError(`[event-ingest] sink.deliver is for sink.type 'deliver', not '${type}'`)
  const fragment = (url: string) => decodeURIComponent(new URL(url).hash.slice(1)) || undefined
  switch (type) {
    case 'http':
      if (typeof sink.url !== 'string' || !/^https?:\/\//.test(sink.url) || !URL.canParse(sink.url)) {
        throw new TypeError(`[event-ingest] sink url must be an http(s) URL like https://sink.example/events, got ${JSON.stringify(sink.url)}`)
      }
      return { type, url: sink.url }
    case 'redis-stream': {
      if (typeof sink.url !== 'string' || !/^rediss?:\/\//.test(sink.url) || !URL.canParse(sink.url)) {
        throw new TypeError(`[event-ingest] sink.url of a redis-stream sink must be a redis:// URL like redis://127.0.0.1:6379/0#events, got ${JSON.stringify(sink.url)}`)
      }
      const stream = sink.stream ?? fragment(sink.url)
      if (!stream) throw new TypeError('[event-ingest] sink.stream is required for a redis-stream sink (or give it as the URL fragment: redis://host:6379#events)')
      return { type, url: sink.url.replace(/#.*$/, ''), stream }
    }
    case 'nats': {
      const url = sink.url ?? env.NATS_URL ?? 'nats://127.0.0.1:4222'
      if (!/^(nats|tls):\/\//.test(url) || !URL.canParse(url)) {
        throw new TypeError(`[event-ingest] sink.url of a nats sink must be a nats:// URL like nats://127.0.0.1:4222#events, got ${JSON.stringify(url)}`)
      }
      const subject = sink.subject ?? fragment(url)
      if (!subject) throw new TypeError('[event-ingest] sink.subject is required for a nats sink (or give it as the URL fragment: nats://host:4222#events)')
      if (/[\s*>]/.test(subject)) throw new TypeError(`[event-ingest] sink.subject must be a subject without spaces or wildcards, got ${shown(subject)}`)
      return { type, url: url.replace(/#.*$/, ''), subject, createStream: sink.createStream }
    }
    case 'deliver':
      if (typeof sink.deliver !== 'function') throw new TypeError('[event-ingest] sink.deliver must be a function for a deliver sink')
      return { type, url: 'deliver:', deliver: sink.deliver }
  }
}
