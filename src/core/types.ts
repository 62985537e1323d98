import type { Storage } from 'unstorage'
import type { BodySource } from '../http/body'
import type { CanonicalEvents, EventDefinitions } from '../model/definitions'
import type { EventLog, EventPage, EventQuery, PruneOptions } from '../log/event-log'
import type { DeadLetter, ForwardingState } from '../forward/types'
import type { EventModel, EventOf } from '../model/model'
import type { ModelDescription } from '../model/schema'
import type { StatsSnapshot } from '../stats/stats'
import type { RejectedEvent } from '../model/validate'
import type { ReceivedBody } from '../model/received'

// The shapes the core, its HTTP contract and every host adapter share. Types only: nothing here
// runs, so any module may import them without depending on the core or on the HTTP handler.

/** A request as any adapter hands it to the core: no framework types. */
export interface IngestHttpRequest {
  /** HTTP method, any case. */
  method: string
  /**
   * Path below the mount point, starting with `/`, as sent (not decoded): `/events/ingest`. Only
   * the exact route path is served; any other spelling is not ours.
   */
  path: string
  /** The query string (with or without `?`) or parsed parameters. */
  query?: string | URLSearchParams
  /** Request headers; names are matched case-insensitively. */
  headers: Headers | Record<string, string | string[] | undefined>
  /**
   * The body: raw bytes, a stream of chunks (read here, with the byte limit and its Content-Encoding
   * decoded), a value a host parser produced, or the refusal a host parser met. A refusal of a body
   * left unread carries `connection: close`; for a parsed or refused one, the adapter adds it only
   * if the request's stream did not reach its end.
   */
  body?: BodySource
}

/** What the adapter writes back. `body` is JSON text. */
export interface IngestHttpResponse {
  status: number
  headers: Record<string, string>
  body: string
}

/** CORS for browser producers on another origin (ingest and schema routes only; admin routes never). */
export interface CorsOptions {
  /** Allowed origins: `'*'`, a list of exact origins, or a predicate. */
  origin: '*' | readonly string[] | ((origin: string) => boolean)
  /**
   * Seconds a browser may cache a preflight answer.
   * @default 600
   */
  maxAge?: number
}

/** The bound on reading a refused upload after its answer: whichever comes first ends it. */
export interface RefusalDrain {
  /**
   * Body bytes read and dropped at most.
   * @default 1_048_576 (1 MiB)
   */
  maxBytes: number
  /**
   * Milliseconds after the answer at most.
   * @default 2000
   */
  maxMs: number
}

/** The outcome of one ingest call, as sent in the 200 body. */
export interface IngestResult {
  /** Events stored by this call. */
  accepted: number
  /** Events whose id was already stored (or repeated in the batch); not stored again. */
  duplicates: number
  /** Invalid events with their index, id and errors. */
  rejected: RejectedEvent[]
}

/** What is known of a batch besides its events, when {@link EventIngest.ingest} is called. */
export interface IngestContext {
  /** When the batch was received (ms). @default Date.now() */
  receivedAt?: number
  /** The body the input was parsed from (`parseBatchBytes`), which spares validation a second walk and storage a second serialisation. */
  hints?: ReceivedBody
}

/** The framework-agnostic core. */
export interface EventIngest<D extends EventDefinitions = CanonicalEvents> {
  readonly model: EventModel<D>
  readonly instanceId: string
  /** Resolves once storage is ready; every method waits for it by itself. */
  ready(): Promise<void>
  /**
   * Validates and stores a batch. Valid events are stored even when others are not; resolves only
   * after they are written.
   * @throws IngestError for a refused batch (400/413) or unavailable storage (503: nothing was acknowledged).
   */
  ingest(input: unknown, context?: IngestContext): Promise<IngestResult>
  /** Last-window stats, with the forwarder's state when a sink is set. */
  stats(): Promise<StatsSnapshot & { forwarding: ForwardingState | null }>
  /** Batches the sink refused for good. */
  deadLetters(): Promise<DeadLetter[]>
  /** Moves dead letters (all, or those ids) back to the outbox; returns how many. */
  requeue(ids?: readonly string[]): Promise<number>
  /** The model description published by `GET /events/schema`. */
  schema(): ModelDescription
  /** Stored events, newest first. */
  events(query?: EventQuery): Promise<EventPage<EventOf<D>>>
  /**
   * Deletes batches received before `olderThan` (not those still to forward) and expired dedupe
   * claims. A `signal` stops it between two storage calls.
   */
  prune(options: PruneOptions): Promise<{ batches: number; claims: number }>
  /** The neutral HTTP handler every adapter calls; `undefined` for paths that are not ours. */
  handle(request: IngestHttpRequest): Promise<IngestHttpResponse | undefined>
  /** Whether a path (below the mount point, as sent) is one of the event-ingest routes. */
  owns(path: string): boolean
  /** The resolved `refusalDrain` option, which the adapters apply to refused uploads. */
  readonly refusalDrain: Readonly<RefusalDrain>
  /**
   * Graceful shutdown: refuses new ingests (503), lets those under way finish, stops forwarding
   * (the attempt in flight may finish; the rest stays in the outbox), stops the retention prune
   * (between two storage calls), flushes stats and releases storage created here.
   */
  close(): Promise<void>
  /** The storage in use (after `ready()`). */
  readonly storage: Storage | undefined
  /** The event log (after `ready()`). */
  readonly log: EventLog | undefined
}
