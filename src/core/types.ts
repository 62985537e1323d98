import type { Storage } from 'unstorage'
import type { CanonicalEvents, EventDefinitions } from '../model/definitions'
import type { EventLog, EventPage, EventQuery, PruneOptions } from '../log/event-log'
import type { DeadLetter, ForwardingState } from '../forward/types'
import type { ReplayFilter, ReplayProgress } from '../forward/replay'
import type { EventModel, EventOf } from '../model/model'
import type { ModelDescription } from '../model/schema'
import type { StatsSnapshot } from '../stats/stats'
import type { ReceivedBody } from '../model/received'
import type { KeyScope } from './key-sources'

// The shapes the core and its callers share. Types only: nothing here runs.

export type { CorsOptions, IngestHttpRequest, IngestHttpResponse, IngestResult, RefusalDrain } from '../http/types'
import type { IngestHttpRequest, IngestHttpResponse, IngestResult, RefusalDrain } from '../http/types'

/** What is known of a batch besides its events, when {@link EventIngest.ingest} is called. */
export interface IngestContext {
  /** When the batch was received (ms). @default Date.now() */
  receivedAt?: number
  /** The body the input was parsed from (`parseBatchBytes`), which spares validation a second walk and storage a second serialisation. */
  hints?: ReceivedBody
  /**
   * When the producer sent the batch, by its own clock (ISO 8601, or epoch ms): the
   * `x-event-sent-at` header or the `sentAt` query parameter. See the `clockSkew` option.
   */
  sentAt?: string
  /**
   * The publishable key the batch came with (its public id and sources; see the
   * `publishableKeys` option): each event of another source is rejected, naming `source`.
   */
  key?: KeyScope
  /**
   * What the input's elements are: envelopes, or CloudEvents (mapped with the `cloudEvents`
   * option, rejected naming CloudEvents attributes).
   * @default 'envelope'
   */
  format?: IngestFormat
}

/** The format of the events given to {@link EventIngest.ingest}. */
export type IngestFormat = 'envelope' | 'cloudevents'

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
  /**
   * Re-sends the stored events received in `[since, until)` (of `name`, of `source`) to the sink,
   * through the outbox; resolves once the replay is started, with its id and progress.
   * @throws IngestError 409 `no_sink` without a sink, 409 `too_many_replays` over `sink.maxReplays`, 400 `invalid_request` naming a bad field.
   */
  replay(filter: ReplayFilter): Promise<ReplayProgress>
  /** The replays this process started, newest first, with their progress. */
  replays(): Promise<ReplayProgress[]>
  /** Stops a replay's scan (what it queued is still delivered). @throws IngestError 404 `not_found` for an unknown id. */
  cancelReplay(id: string): Promise<ReplayProgress>
  /** The model description published by `GET /events/schema`. */
  schema(): ModelDescription
  /** Stored events, newest first. */
  events(query?: EventQuery): Promise<EventPage<EventOf<D>>>
  /**
   * Deletes batches received before `olderThan` (not those still to forward) and expired dedupe
   * claims. A `signal` stops it between two storage calls.
   */
  prune(options: PruneOptions): Promise<{ batches: number; claims: number }>
  /**
   * The Prometheus metrics in the text exposition format (with the `metrics` option); rejects with
   * `metrics_disabled` when they are off.
   */
  metrics(): Promise<string>
  /**
   * A Node `(req, res)` handler answering the metrics text, with no admin auth: mount it on an
   * internal port only the scraper reaches.
   * @example
   * createServer(ingest.metricsHandler).listen(9464, '127.0.0.1')
   */
  metricsHandler(request: import('node:http').IncomingMessage, response: import('node:http').ServerResponse): void
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
