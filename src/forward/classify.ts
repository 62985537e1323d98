import type { RefusedEvent } from './types'

/**
 * What one sink attempt's outcome means for its batches, as a pure function of the outcome: no
 * I/O, no clock, no randomness of its own (`now` and `random` are given), so the whole table of
 * answers is unit-tested (test/unit/forward.classify.test.ts).
 */

/** The outcome of one attempt: the sink's answer, or the failure that stopped it. */
export type AttemptOutcome =
  | { kind: 'answer'; status: number; retryAfter: string | null; body: string }
  | { kind: 'failure'; failure: 'timeout' | 'network' }

/** The events one batch of a request carried, in request order. */
export interface SentPart {
  events: readonly unknown[]
  /** Their positions in the stored batch, where the batch sent only some of them (`only`). */
  positions?: readonly number[]
}

/** What a classification needs besides the outcome. */
export interface AttemptContext {
  /** This attempt's number for the request: 1 for the first. */
  attempt: number
  now: number
  /** The request's batches, in request order. */
  parts: readonly SentPart[]
  minBackoffMs: number
  maxBackoffMs: number
  maxRetryAfterMs: number
  /** A number in [0, 1), for jitter. @default Math.random */
  random?: () => number
}

/** The verdict on an attempt. `failure` is the kind counted in stats (`recordForwardFailure`). */
export type Verdict =
  /** Every event reached the sink. */
  | { kind: 'delivered' }
  /** A 2xx that listed rejected events: these (by part) become dead letters, the rest were delivered. */
  | { kind: 'partial'; failure: 'partial'; refused: ReadonlyMap<number, RefusedEvent[]> }
  /** Try the same request again at `at` (ms). */
  | { kind: 'retry'; failure: string; at: number }
  /** A combined request refused for good: send its batches one by one, so only the bad one is dead-lettered. */
  | { kind: 'split' }
  /** The sink refused the batch for good: a dead letter. */
  | { kind: 'dead'; failure: 'rejected'; status: number }

/** Statuses that mean "not now" rather than "never". */
const RETRYABLE = new Set([408, 425, 429])

/** Classifies one attempt's outcome. */
export function classifyAttempt(outcome: AttemptOutcome, context: AttemptContext): Verdict {
  const { now } = context
  if (outcome.kind === 'failure') return { kind: 'retry', failure: outcome.failure, at: now + backoffMs(context) }
  const { status } = outcome
  if (status >= 200 && status < 300) {
    // A 200 may still list events the sink rejected (event-ingest's own answer does): those were
    // not delivered, and become dead letters with the sink's reasons; the rest were.
    const refused = refusedEvents(outcome.body, context.parts)
    return refused.size > 0 ? { kind: 'partial', failure: 'partial', refused } : { kind: 'delivered' }
  }
  if (status >= 500 || RETRYABLE.has(status)) {
    const retryAfter = parseRetryAfter(outcome.retryAfter, now)
    const delay = retryAfter !== undefined ? Math.min(retryAfter, context.maxRetryAfterMs) : backoffMs(context)
    return { kind: 'retry', failure: status === 429 ? '429' : status >= 500 ? '5xx' : String(status), at: now + delay }
  }
  // One bad batch must not take its neighbours down.
  if (context.parts.length > 1) return { kind: 'split' }
  return { kind: 'dead', failure: 'rejected', status }
}

/**
 * The wait before attempt `attempt + 1`, in ms: exponential from `minBackoffMs`, capped at
 * `maxBackoffMs`, with full jitter above half the first delay.
 */
export function backoffMs(context: Pick<AttemptContext, 'attempt' | 'minBackoffMs' | 'maxBackoffMs' | 'random'>): number {
  const { minBackoffMs: min, maxBackoffMs: max } = context
  const ceiling = Math.min(max, min * 2 ** Math.min(context.attempt, 30))
  return Math.floor((context.random ?? Math.random)() * ceiling) + Math.min(min, ceiling) / 2
}

const MONTH = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)'
const TIME = '\\d{2}:\\d{2}:\\d{2}'
/** The three forms of an HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, then the obsolete RFC 850 and asctime ones. */
const IMF_FIXDATE = new RegExp(`^[A-Za-z]{3}, \\d{2} ${MONTH} \\d{4} ${TIME} GMT$`)
const RFC_850 = new RegExp(`^[A-Za-z]{6,9}, \\d{2}-${MONTH}-\\d{2} ${TIME} GMT$`)
const ASCTIME = new RegExp(`^[A-Za-z]{3} ${MONTH} [ \\d]\\d ${TIME} \\d{4}$`)

/**
 * A `Retry-After` value as a wait in ms from `now`: delta-seconds, or an HTTP-date (a date past
 * gives 0). Anything else is no value: `Date.parse` alone would read `1.5` or `-1` as dates in 2001.
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  const text = value?.trim()
  if (!text) return undefined
  if (/^\d+$/.test(text)) return Number(text) * 1000
  // asctime has no zone, and means GMT; Date.parse would read it as local time.
  const date = IMF_FIXDATE.test(text) || RFC_850.test(text) ? text : ASCTIME.test(text) ? `${text} GMT` : undefined
  if (date === undefined) return undefined
  const at = Date.parse(date)
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined
}

/**
 * The events a 2xx answer lists as rejected (`{ rejected: [{ index, id?, errors }] }`, `index`
 * counted in the request), by part, with their positions in the stored batch. An entry whose
 * index is out of range is placed by its `id` where that names one event of the request; one
 * that names neither cannot be placed and is left out (the event counts as delivered).
 */
export function refusedEvents(body: string, parts: readonly SentPart[]): Map<number, RefusedEvent[]> {
  const refused = new Map<number, RefusedEvent[]>()
  const listed = rejectedList(body)
  if (listed.length === 0) return refused
  // Request position -> [part, position in its stored batch, the event's id].
  const places: [number, number, unknown][] = []
  parts.forEach(({ events, positions }, part) => {
    events.forEach((event, i) => places.push([part, positions ? positions[i]! : i, (event as { id?: unknown } | null)?.id]))
  })
  const seen = new Set<number>()
  for (const item of listed) {
    if (typeof item !== 'object' || item === null) continue
    const { index, id, errors } = item as { index?: unknown; id?: unknown; errors?: unknown }
    const at = placeOf(places, index, id)
    if (at < 0 || seen.has(at)) continue
    seen.add(at)
    const [part, position, eventId] = places[at]!
    const event: RefusedEvent = { index: position, errors: errors ?? [] }
    if (typeof eventId === 'string') event.id = eventId
    const list = refused.get(part)
    if (list) list.push(event)
    else refused.set(part, [event])
  }
  for (const list of refused.values()) list.sort((a, b) => a.index - b.index)
  return refused
}

/** The request position an answer's entry names: its index when in range, else the one event with its id; -1 for none. */
function placeOf(places: readonly [number, number, unknown][], index: unknown, id: unknown): number {
  if (Number.isInteger(index) && (index as number) >= 0 && (index as number) < places.length) return index as number
  if (typeof id !== 'string') return -1
  const matches = places.flatMap(([, , eventId], i) => (eventId === id ? [i] : []))
  return matches.length === 1 ? matches[0]! : -1
}

/** The `rejected` array of an answer body; empty when there is none. */
function rejectedList(body: string): unknown[] {
  if (!body.includes('"rejected"')) return []
  let answer: unknown
  try {
    answer = JSON.parse(body)
  } catch {
    return []
  }
  const rejected = typeof answer === 'object' && answer !== null ? (answer as { rejected?: unknown }).rejected : undefined
  return Array.isArray(rejected) ? rejected : []
}
