import { ofetch } from 'ofetch'
import type { AttemptOutcome } from './classify'
import type { Group } from './group'
import type { ResolvedSinkOptions } from './options'

/**
 * HTTP delivery: one attempt of one group, `POST` to the sink with its idempotency key and a
 * fresh time limit, reported as an {@link AttemptOutcome} for `classifyAttempt`. No retries here:
 * the forwarder schedules them.
 */
export class HttpSink {
  private readonly headers: Readonly<Record<string, string>>
  /** The attempt in flight, to abort on close. */
  private inFlight: AbortController | undefined

  constructor(private readonly sink: ResolvedSinkOptions) {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...sink.headers }
    if (sink.token) {
      const name = sink.tokenHeader.toLowerCase()
      headers[name] = name === 'authorization' ? `Bearer ${sink.token}` : sink.token
    }
    this.headers = headers
  }

  /** Sends a group once; `aborted` marks a failure the time limit or {@link abort} cut short. */
  async send(group: Group): Promise<AttemptOutcome & { aborted?: boolean }> {
    const controller = new AbortController()
    this.inFlight = controller
    const timeout = setTimeout(() => controller.abort(new DOMException('sink attempt timed out', 'TimeoutError')), this.sink.timeoutMs)
    try {
      // A fresh signal per attempt, and no ofetch retries: ofetch 1.5 would reuse an aborted signal.
      const response = await ofetch.raw(this.sink.url, {
        method: 'POST',
        body: group.body,
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

  /** Aborts the attempt in flight, if any (on close, past the attempt timeout). */
  abort(): void {
    this.inFlight?.abort(new DOMException('closing', 'AbortError'))
  }
}

/** What stopped an attempt that got no answer. */
export function failureKind(error: unknown): 'timeout' | 'network' {
  const name = (error as { name?: string } | null)?.name
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout'
  const cause = (error as { cause?: { name?: string } } | null)?.cause?.name
  return cause === 'TimeoutError' || cause === 'AbortError' ? 'timeout' : 'network'
}
