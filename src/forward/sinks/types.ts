import type { AttemptOutcome } from '../classify'
import type { Group } from '../group'

/**
 * A sink: where the forwarder sends one group of outbox batches, once per attempt. The outbox,
 * leases, backoff and dead letters are the forwarder's and are the same for every sink; a sink
 * only makes one attempt and reports it as an {@link AttemptOutcome}, in HTTP terms
 * (`classifyAttempt` reads a 2xx as delivered, a 5xx, 408, 425 or 429 as retry, honouring
 * `retryAfter`, any other 4xx as a refusal for good).
 */
export interface Sink {
  /** Names the sink in stats (`forwarding.sink`): a URL without credentials. */
  readonly name: string
  /** Sends a group once; `aborted` marks a failure that the time limit or {@link abort} cut short. */
  send(group: Group): Promise<SinkOutcome>
  /** Aborts the attempt in flight, if any (on close, past the attempt timeout). */
  abort(): void
  /** Releases the sink's connection, after the last attempt. */
  close(): Promise<void>
}

/** One attempt's outcome. */
export type SinkOutcome = AttemptOutcome & { aborted?: boolean }

/** The outcome of an attempt the sink took. */
export const DELIVERED: SinkOutcome = Object.freeze({ kind: 'answer', status: 200, retryAfter: null, body: '' })

/** A URL without its user and password, for stats and errors. */
export function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url)
    parsed.username = ''
    parsed.password = ''
    return parsed.toString()
  } catch {
    return url
  }
}
