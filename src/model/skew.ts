import { canonicalTime, withinYears } from './time'

/**
 * Clock-skew correction: a producer says when it sent a batch (`x-event-sent-at`, or `sentAt` in
 * the query string for beacons); the difference between that and when the batch was received is
 * how far the producer's clock is off, give or take the time in transit. Events keep their
 * `occurredAt`; the corrected time is `occurredAt + (receivedAt - sentAt)`, which is
 * `receivedAt - (sentAt - occurredAt)` (the formula of Segment and Snowplow). It is applied only
 * past a tolerance: small corrections, mostly transit time, would only reorder events that are
 * in the right order.
 */
export interface ClockSkewSettings {
  /** A skew up to this (either way) is left alone. */
  readonly toleranceMs: number
  /** A skew beyond this is taken for a broken `sentAt`, ignored and counted. */
  readonly maxMs: number
}

/** What a batch's `sentAt` says. */
export type SkewJudgement =
  /** No `sentAt`. */
  | { readonly kind: 'none' }
  /** Within the tolerance: left alone. */
  | { readonly kind: 'within'; readonly skewMs: number }
  /** Past the tolerance: each event's time is corrected by `skewMs`. */
  | { readonly kind: 'corrected'; readonly skewMs: number }
  /** A `sentAt` that cannot be right: ignored (and counted). */
  | { readonly kind: 'ignored'; readonly reason: string }

const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/i
const EPOCH_MS = /^\d{1,15}$/

/** A `sentAt` in ms: an ISO 8601 timestamp with `Z` or an offset, or epoch milliseconds; NaN otherwise. */
export function parseSentAt(value: string): number {
  const canonical = canonicalTime(value)
  if (canonical === canonical) return canonical
  const ms = EPOCH_MS.test(value) ? Number(value) : ISO_WITH_OFFSET.test(value) ? Date.parse(value) : Number.NaN
  return ms === ms && withinYears(ms) ? ms : Number.NaN
}

/**
 * Judges a batch's `sentAt` against its receive time and the latest `occurredAt` among its events
 * (NaN when none is known). Ignored: a value that is not a timestamp, a skew beyond `maxMs`, or a
 * batch sent, by the producer's own clock, more than the tolerance before one of its events
 * occurred (its clock cannot be off by that: the two times come from the same clock).
 */
export function judgeSkew(sentAt: string | undefined, receivedAt: number, latestOccurredAt: number, settings: ClockSkewSettings): SkewJudgement {
  if (sentAt === undefined || sentAt === '') return { kind: 'none' }
  const sent = parseSentAt(sentAt)
  if (sent !== sent) return { kind: 'ignored', reason: 'not a timestamp' }
  if (latestOccurredAt === latestOccurredAt && sent < latestOccurredAt - settings.toleranceMs) return { kind: 'ignored', reason: 'sent before an event occurred' }
  const skewMs = receivedAt - sent
  if (Math.abs(skewMs) > settings.maxMs) return { kind: 'ignored', reason: 'beyond maxMs' }
  return Math.abs(skewMs) > settings.toleranceMs ? { kind: 'corrected', skewMs } : { kind: 'within', skewMs }
}
