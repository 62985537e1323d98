import { ofetch } from 'ofetch'
import type { Group } from '../group'
import type { ResolvedSinkOptions } from '../options'
import { CLOUDEVENTS_BATCH_CONTENT_TYPE, defaultForwardSource, envelopeToCloudEvent } from '../../model/cloudevents'
import type { Sink, SinkOutcome } from './types'

/**
 * HTTP delivery: one attempt of one group, `POST` to the sink with its idempotency key and a
 * fresh time limit, reported as an {@link AttemptOutcome} for `classifyAttempt`. No retries here:
 * the forwarder schedules them.
 */
export class HttpSink implements Sink {
  readonly name: string
  private readonly headers: Readonly<Record<string, string>>
  /** The attempt in flight, to abort on close. */
  private inFlight: AbortController | undefined

  constructor(private readonly sink: ResolvedSinkOptions) {
    const contentType = sink.format === 'cloudevents' ? CLOUDEVENTS_BATCH_CONTENT_TYPE : 'application/json'
    const headers: Record<string, string> = { 'content-type': contentType, ...sink.headers }
    if (sink.token) {
      const name = sink.tokenHeader.toLowerCase()
      headers[name] = name === 'authorization' ? `Bearer ${sink.token}` : sink.token
    }
    this.headers = headers
    this.name = sink.url
  }

  /** Sends a group once; `aborted` marks a failure the time limit or {@link abort} cut short. */
  async send(group: Group): Promise<SinkOutcome> {
    const controller = new AbortController()
    this.inFlight = controller
    const timeout = setTimeout(() => controller.abort(new DOMException('sink attempt timed out', 'TimeoutError')), this.sink.timeoutMs)
    try {
      // A fresh signal per attempt, and no ofetch retries: ofetch 1.5 would reuse an aborted signal.
      const response = await ofetch.raw(this.sink.url, {
        method: 'POST',
        body: this.sink.format === 'cloudevents' ? this.cloudEventsBody(group) : group.body,
        headers: { ...this.headers, 'idempotency-key': group.key },
        retry: 0,
        signal: controller.signal,
        ignoreResponseError: true,
        responseType: 'text',
      })
      const body = typeof response._data === 'string' ? response._data : ''
      return { kind: 'answer', status: response.status, retryAfter: response.headers.get('retry-after'), body }
    } catch (error) {
      return { kind: 'failure', failure: failureKind(error), aborted: controller.signal.aborted }
    } finally {
      clearTimeout(timeout)
      this.inFlight = undefined
    }
  }

  /** The group's events as a CloudEvents batch, in the order of the envelope body. */
  private cloudEventsBody(group: Group): string {
    const events: unknown[] = []
    for (const part of group.parts) {
      for (const stored of part.events) {
        const envelope = stored as Record<string, unknown>
        events.push(envelopeToCloudEvent(envelope, this.sourceOf(envelope)))
      }
    }
    return JSON.stringify(events)
  }

  /** The configured source, or the default when the host's function fails or gives no URI-reference. */
  private sourceOf(envelope: Record<string, unknown>): string {
    try {
      const source = this.sink.cloudEventsSource(envelope)
      if (typeof source === 'string' && source !== '') return source
    } catch {}
    return defaultForwardSource(envelope)
  }

  /** Aborts the attempt in flight, if any (on close, past the attempt timeout). */
  abort(): void {
    this.inFlight?.abort(new DOMException('closing', 'AbortError'))
  }

  async close(): Promise<void> {}
}

/** What stopped an attempt that got no answer. */
export function failureKind(error: unknown): 'timeout' | 'network' {
  const name = (error as { name?: string } | null)?.name
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout'
  const cause = (error as { cause?: { name?: string } } | null)?.cause?.name
  return cause === 'TimeoutError' || cause === 'AbortError' ? 'timeout' : 'network'
}
