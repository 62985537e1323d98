import { checkBoolean, checkFunction, checkNumber, checkObject, checkString, MAX_TIMER_MS, shown } from '../base/option-checks'
import { defaultForwardSource } from '../model/cloudevents'

/** Where and how accepted batches are forwarded. Every field but `url` has a default. */
export interface SinkOptions {
  /** The sink's URL; it receives `POST` with a JSON array of events (the ingest envelope). */
  url: string
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
})

/** Sink options checked, with every default in place (`token` stays unset when none is given). */
export type ResolvedSinkOptions = Readonly<Required<Omit<SinkOptions, 'token' | 'headers'>> & { token?: string; headers: Readonly<Record<string, string>> }>

/**
 * Checks sink options and fills in their defaults, into a new frozen object (the one given is
 * never written to). `token` is used when the options carry none.
 */
export function resolveSinkOptions(sink: SinkOptions, token?: string): ResolvedSinkOptions {
  const { leaseMs } = checkSinkOptions(sink)
  return Object.freeze({
    ...sinkDefaults,
    ...definedFields(sink),
    url: sink.url,
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
  if (typeof sink.url !== 'string' || !/^https?:\/\//.test(sink.url) || !URL.canParse(sink.url)) {
    throw new TypeError(`[event-ingest] sink url must be an http(s) URL like https://sink.example/events, got ${JSON.stringify(sink.url)}`)
  }
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
