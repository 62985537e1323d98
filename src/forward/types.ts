import type { OutboxEntry } from '../log/event-log'

// The forwarder's types: the public ones (exported from the package) and the entry it keeps in the outbox.

/**
 * A batch the sink refused for good (a 4xx other than 408, 425 and 429), or the events of a batch
 * that a 200 answer listed as rejected (`rejected`, the sink's reasons with them).
 */
export interface DeadLetter {
  /** Outbox id; pass it to `requeue`. */
  id: string
  batch: string
  /** Events refused: the whole batch, or those in `rejected`. */
  events: number
  receivedAt: number
  status: number
  /** The start of the sink's answer. */
  body: string
  attempts: number
  failedAt: number
  /**
   * Only these events of the batch were refused, each with the sink's reasons: `index` is the
   * event's position in the stored batch (not in the sink request). Absent: the whole batch was.
   * `requeue` sends only these again.
   */
  rejected?: RefusedEvent[]
}

/** One event a sink listed as rejected in a 200 answer (event-ingest's `{accepted, duplicates, rejected}`). */
export interface RefusedEvent {
  /** Position in the stored batch. */
  index: number
  id?: string
  /** The sink's reasons, as it sent them (event-ingest sends `[{ path, message }]`). */
  errors: unknown
}

/** Delivery state for stats. */
export interface ForwardingState {
  sink: string
  /** Batches waiting in this instance's outbox queue. */
  backlog: number
  /** Events in them. */
  backlogEvents: number
  /** Age of the oldest pending batch, in ms; null when none. */
  oldestPendingMs: number | null
  deadLetters: number
  /** Attempts of the batch at the head of the queue. */
  attempts: number
  nextAttemptInMs: number | null
}

/** An outbox entry as the forwarder writes it: `only`, set by `requeue`, sends some events of the batch. */
export interface ForwardEntry extends OutboxEntry {
  /** Positions in the stored batch of the events to send; absent: all of them. */
  only?: number[]
  /** Written by a replay: sent alone, so its idempotency key depends on this entry only. */
  replay?: true
}

/** The forwarder's public face. */
export interface Forwarder {
  /** Queues a batch just stored (its outbox entry is already durable). */
  enqueue(outboxKey: string, entry: OutboxEntry): Promise<boolean>
  state(): ForwardingState
  deadLetters(): Promise<DeadLetter[]>
  /**
   * Writes a replay's outbox entry and queues it; resolves when it leaves the queue: true when
   * delivered, false when it became a dead letter or the forwarder closed first.
   */
  replay(outboxKey: string, entry: ForwardEntry): Promise<boolean>
  /** Moves dead letters (all, or those ids) back to the outbox. */
  requeue(ids?: readonly string[]): Promise<number>
  /** Stops taking work, waits for the attempt in flight (at most `timeoutMs`), leaves the rest in the outbox. */
  close(): Promise<void>
}
