import type { ReplayProgress } from '../forward/replay'
import type { DeadLetter, ForwardingState } from '../forward/types'
import type { EventPage, EventQuery } from '../log/event-log'
import type { ReceivedBody } from '../model/received'
import type { ModelDescription } from '../model/schema'
import type { RejectedEvent } from '../model/validate'
import type { StatsSnapshot } from '../stats/stats'
import type { BodySource } from './body'

// The neutral HTTP contract: what every host adapter hands the handler and gets back, and what the
// handler needs of the core. Types only: an adapter depends on these, never on a framework of another.

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
   * The address of the socket's peer (`req.socket.remoteAddress`): the client, or the nearest
   * proxy. The per-address rate limit keys on it (or on `X-Forwarded-For`, as `trustProxy` says).
   */
  remoteAddress?: string
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

/** What the HTTP handler calls on the core (an {@link EventIngest} is one). */
export interface HandledCore {
  ingest(input: unknown, context?: { receivedAt?: number; hints?: ReceivedBody; sentAt?: string; key?: { readonly id: string; readonly sources: readonly string[] }; format?: 'envelope' | 'cloudevents' }): Promise<IngestResult>
  stats(): Promise<StatsSnapshot & { forwarding: ForwardingState | null }>
  deadLetters(): Promise<DeadLetter[]>
  requeue(ids?: readonly string[]): Promise<number>
  replay(filter: unknown): Promise<ReplayProgress>
  replays(): Promise<ReplayProgress[]>
  cancelReplay(id: string): Promise<ReplayProgress>
  schema(): ModelDescription
  events(query?: EventQuery): Promise<EventPage>
  /** The Prometheus text, with its content type; rejects with `metrics_disabled` when metrics are off. */
  metricsText(): Promise<{ contentType: string; text: string }>
  readonly model: { readonly names: readonly string[]; readonly limits: { readonly maxBodyBytes: number; readonly maxDepth: number; readonly maxEventBytes: number; readonly maxInflateRatio: number } }
}
