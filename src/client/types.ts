import type { CanonicalEvents, EventDefinitions, EventSource, SCHEMA_VERSION } from '../model/definitions'
import type { PayloadOf } from '../model/model'

/** The envelope version the client writes when no model says otherwise (checked against the model's at compile time). */
export const ENVELOPE_VERSION: typeof SCHEMA_VERSION = 1

/** One event as the client sends it: the envelope of `POST /events/ingest`. */
export interface ClientEnvelope {
  id: string
  name: string
  schemaVersion: number
  occurredAt: string
  source: EventSource
  companyId?: string
  subjectId?: string
  payload: Record<string, unknown>
}

/** What the client needs of a model: its envelope version, and its definitions for the payload types. */
export interface ClientModel<D extends EventDefinitions = CanonicalEvents> {
  readonly schemaVersion: number
  readonly events: Readonly<D>
}

/**
 * Where a client keeps what it has queued, so a process that restarts sends it on. `load` runs
 * once, at creation; `save` after every change with everything still undelivered (in order).
 */
export interface QueueStorage {
  load(): ClientEnvelope[] | undefined | Promise<ClientEnvelope[] | undefined>
  save(events: ClientEnvelope[]): void | Promise<void>
}

/** How failed sends are retried (network errors, 408, 429, 5xx). */
export interface RetryOptions {
  /**
   * Attempts per batch, the first included; then the batch is dropped and reported (`retries_exhausted`).
   * @default 10
   */
  attempts?: number
  /**
   * The backoff's base: attempt n waits a random time in [0, min(maxDelayMs, minDelayMs × 2^(n-1))] (full jitter).
   * @default 500
   */
  minDelayMs?: number
  /** @default 30_000 */
  maxDelayMs?: number
}

/** Options of {@link createEventClient}. */
export interface EventClientOptions<D extends EventDefinitions = CanonicalEvents> {
  /** Where event-ingest is mounted: `https://shop.example.com/api` posts to `…/api/events/ingest`. Relative in browsers. */
  endpoint: string
  /** Secret ingest token, sent in `x-event-token` (servers and trusted processes only). */
  token?: string
  /** Publishable key (`pk_…`), sent as `?key=` (browsers; the only credential a beacon can carry). */
  key?: string
  /** The `source` of every event. */
  source: EventSource
  /** A model (`createEventModel()`) or anything with its `schemaVersion` and `events`: types the payloads, sets `schemaVersion`. */
  model?: ClientModel<D>
  /**
   * Send as soon as this many events are queued.
   * @default 20
   */
  flushAt?: number
  /**
   * Send queued events at most this many milliseconds after the first of them was tracked.
   * @default 5000
   */
  flushInterval?: number
  /**
   * Largest batch body in bytes (before compression); the server's `maxBodyBytes` caps it.
   * @default 524_288 (512 KiB)
   */
  maxBatchBytes?: number
  /**
   * Most events held (queued and in flight). When full, the oldest queued event is dropped and reported (`queue_full`).
   * @default 10_000
   */
  maxQueue?: number
  /**
   * An attempt with no answer (headers and body) within this many milliseconds fails, and is retried.
   * @default 10_000
   */
  requestTimeout?: number
  /** `false`: one attempt only. */
  retry?: RetryOptions | false
  /**
   * gzip bodies of at least this many bytes (`CompressionStream`); `false`: never.
   * @default { threshold: 1024 }
   */
  compression?: { threshold: number } | false
  /**
   * Told of every event that will not be delivered, and why.
   * @default console.warn
   */
  onError?: (error: EventClientError) => void
  /** Keeps the queue across restarts; see {@link QueueStorage}. */
  storage?: QueueStorage
  /**
   * Browsers: send what is queued with `navigator.sendBeacon` (or `fetch` with `keepalive`) when the page is hidden or left.
   * @default true where `document` exists
   */
  beacon?: boolean
  /** @default globalThis.fetch */
  fetch?: typeof fetch
}

/** Why events were not delivered. */
export type EventClientErrorCode =
  /** The queue was full: the oldest queued event was dropped. */
  | 'queue_full'
  /** The event is larger than the server's `maxEventBytes` (or the batch limit): never sent. */
  | 'event_too_large'
  /** The server answered 200 and rejected these events as invalid (`details` holds its errors). */
  | 'rejected'
  /** A permanent refusal (400, 401, 403, 413, 415, …): not retried. */
  | 'refused'
  /** Every attempt failed with a retryable error. */
  | 'retries_exhausted'
  /** `track()` after `close()`. */
  | 'closed'
  /** The storage hook failed. */
  | 'storage'

/** An error reported to `onError`: a stable `code`, and the events it concerns. */
export class EventClientError extends Error {
  override readonly name = 'EventClientError'
  constructor(
    readonly code: EventClientErrorCode,
    message: string,
    readonly events: ClientEnvelope[],
    readonly status?: number,
    readonly details?: unknown,
  ) {
    super(`[event-ingest/client] ${message}`)
  }
}

/** The optional envelope fields of {@link EventClient.track}. */
export interface TrackOptions {
  /** @default crypto.randomUUID() */
  id?: string
  /** @default now */
  occurredAt?: Date | string | number
  subjectId?: string
  companyId?: string
}

/** A producer's client: see {@link createEventClient}. */
export interface EventClient<D extends EventDefinitions = CanonicalEvents> {
  /** Queues an event; returns its id. The payload's type follows from the name. */
  track<N extends keyof D & string>(name: N, payload: PayloadOf<D[N]>, options?: TrackOptions): string
  /** Sends everything queued, retrying as configured; resolves when each event is delivered or reported. */
  flush(): Promise<void>
  /**
   * Stops timers and listeners and flushes; further `track()` calls are reported (`closed`). With
   * `timeoutMs` (a serverless handler's budget), what is not delivered by then is reported
   * (`closed`) instead of waited for; a storage keeps it for the next start.
   */
  close(options?: { timeoutMs?: number }): Promise<void>
  /** Events held: queued and in flight. */
  readonly size: number
}
