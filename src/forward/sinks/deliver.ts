import type { Group } from '../group'
import type { DeliverBatch, ResolvedSinkOptions } from '../options'
import { DELIVERED, type Sink, type SinkOutcome } from './types'

/**
 * Thrown by a host's `deliver` function: the sink refused the batch for good, and it becomes a
 * dead letter (`requeue` sends it again) instead of being retried.
 *
 * @example
 * throw new SinkRefusal('topic does not exist')
 */
export class SinkRefusal extends Error {
  override readonly name = 'SinkRefusal'
}

/**
 * Thrown by a host's `deliver` function: try the batch again after `retryAfterMs` (capped by
 * `maxRetryAfterMs`) instead of after the usual backoff.
 *
 * @example
 * throw new SinkRetry('throttled', 2000)
 */
export class SinkRetry extends Error {
  override readonly name = 'SinkRetry'
  constructor(message: string, readonly retryAfterMs: number) {
    super(message)
  }
}

/** A host's `deliver(batch)` as a sink: one call per attempt, within the attempt's time limit (`timeoutMs`). */
export class DeliverSink implements Sink {
  readonly name = 'deliver'
  /** Attempts at the group in flight, by its key. */
  private attempts = { key: '', count: 0 }

  constructor(private readonly sink: ResolvedSinkOptions) {}

  async send(group: Group): Promise<SinkOutcome> {
    const attempt = this.attempts.key === group.key ? this.attempts.count + 1 : 1
    this.attempts = { key: group.key, count: attempt }
    const events = group.parts.flatMap((part) => part.events) as Record<string, unknown>[]
    const batch: DeliverBatch = { key: group.key, events, body: group.body, attempt }
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.sink.timeoutMs)))
    try {
      // A call past the attempt's time limit is retried; the late call may still land, like an HTTP attempt's.
      const done = await Promise.race([Promise.resolve().then(() => this.sink.deliver!(batch)), timedOut])
      return done === 'timeout' ? { kind: 'failure', failure: 'timeout' } : DELIVERED
    } catch (error) {
      const message = String((error as Error | null)?.message ?? error).slice(0, 1024)
      if (error instanceof SinkRefusal) return { kind: 'answer', status: 422, retryAfter: null, body: message }
      if (error instanceof SinkRetry && Number.isFinite(error.retryAfterMs)) {
        return { kind: 'answer', status: 503, retryAfter: String(Math.max(0, Math.ceil(error.retryAfterMs / 1000))), body: message }
      }
      return { kind: 'answer', status: 503, retryAfter: null, body: message }
    } finally {
      clearTimeout(timer)
    }
  }

  abort(): void {}

  async close(): Promise<void> {}
}
