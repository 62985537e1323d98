import type { Storage } from 'unstorage'
import { InstanceWindow, type StatsWindow } from './window'

export type { StatsSnapshot } from './snapshot'
export type { StatsEvent, StatsWindow } from './window'

/** The default of every optional setting of {@link createStatsWindow}. */
export const statsDefaults = Object.freeze({
  prefix: 'stats',
  windowMinutes: 60,
  futureToleranceMs: 300_000,
  pastToleranceMs: 604_800_000,
  flushIntervalMs: 5000,
})

/** Options of {@link createStatsWindow}. */
export interface StatsOptions {
  /** Where the per-minute buckets and the instance registry are persisted; may be shared by instances. */
  storage: Storage
  /** This process. Buckets are written per instance, so instances never overwrite each other's counts. */
  instanceId: string
  /**
   * Key prefix inside `storage`.
   * @default 'stats'
   */
  prefix?: string
  /**
   * Length of the window in minutes, the current minute included.
   * @default 60
   */
  windowMinutes?: number
  /**
   * Events whose `occurredAt` is later than `receivedAt` plus this are counted as `futureEvents` and kept
   * out of lag; earlier ones, still ahead of `receivedAt`, count as a lag of 0.
   * @default 300_000
   */
  futureToleranceMs?: number
  /**
   * Events whose `occurredAt` is earlier than `receivedAt` minus this are counted as `pastEvents` and
   * kept out of lag: one event of year 0 would otherwise move the hour's average by centuries.
   * Offline producers (mobile apps, agents back from a night without network) legitimately send
   * events hours or days old, so the default keeps a week in lag. `Infinity` keeps every event.
   * @default 604_800_000 (7 days)
   */
  pastToleranceMs?: number
  /**
   * How often this instance's changed buckets are written. The timer is `unref()`'d; `0` disables it
   * (call `flush()` yourself).
   * @default 5000
   */
  flushIntervalMs?: number
  /**
   * Called when a timer flush fails. The buckets stay dirty and are written by the next flush.
   * @default () => {} (the error is dropped)
   */
  onError?: (error: unknown) => void
  /**
   * Whether the event log's batch write counts the events it stores, per minute, at
   * `${prefix}:a:<minute>` (on Redis: in the same script as the batch). Then `totals.accepted`
   * and each minute's `accepted` are read from those counts: exact across instances, a crash
   * included. By name, source and lag still come from the instances' buckets.
   * @default false
   */
  exactAccepted?: boolean
  /**
   * The clock, for tests.
   * @default Date.now
   */
  now?: () => number
}

/**
 * Creates the stats window of one instance. Its buckets are written to
 * `${prefix}:b:${instanceId}:${minute}` (with a TTL of two windows) and the instance registers in
 * the instance registry at `${prefix}:seen` (src/storage/registry.ts). A restarted instance with the same id picks its buckets back up.
 *
 * @example
 * const stats = createStatsWindow({ storage, instanceId: `${hostname()}-${process.pid}` })
 * stats.recordAccepted(result.events, Date.now())
 * const body = await stats.snapshot()
 */
export function createStatsWindow(options: StatsOptions): StatsWindow {
  const { storage, instanceId } = options
  const prefix = options.prefix ?? statsDefaults.prefix
  const windowMinutes = options.windowMinutes ?? statsDefaults.windowMinutes
  const futureToleranceMs = options.futureToleranceMs ?? statsDefaults.futureToleranceMs
  const pastToleranceMs = options.pastToleranceMs ?? statsDefaults.pastToleranceMs
  const flushIntervalMs = options.flushIntervalMs ?? statsDefaults.flushIntervalMs
  const onError = options.onError ?? (() => {})
  const now = options.now ?? Date.now

  checkKeySegment('instanceId', instanceId)
  checkKeySegment('prefix', prefix)
  if (!Number.isSafeInteger(windowMinutes) || windowMinutes < 1) {
    throw new RangeError(`windowMinutes must be a positive integer, got ${windowMinutes}`)
  }
  if (!(futureToleranceMs >= 0 && futureToleranceMs < Infinity)) {
    throw new RangeError(`futureToleranceMs must be a finite number >= 0, got ${futureToleranceMs}`)
  }
  if (typeof pastToleranceMs !== 'number' || !(pastToleranceMs >= 0)) {
    throw new RangeError(`pastToleranceMs must be a number >= 0 (Infinity keeps every past event in lag), got ${pastToleranceMs}`)
  }
  if (!(flushIntervalMs >= 0 && flushIntervalMs < Infinity)) {
    throw new RangeError(`flushIntervalMs must be a finite number >= 0, got ${flushIntervalMs}`)
  }

  return new InstanceWindow({ storage, instanceId, prefix, windowMinutes, futureToleranceMs, pastToleranceMs, flushIntervalMs, onError, now, exactAccepted: options.exactAccepted === true })
}

/** A `?` would cut the key short and `.`/`..` segments are refused by unstorage. */
function checkKeySegment(option: string, value: string): void {
  if (typeof value !== 'string' || value === '' || value.includes('?') || /(^|[:/\\])\.\.?($|[:/\\])/.test(value)) {
    throw new TypeError(`${option} must be a non-empty string without '?' or '.'/'..' segments, got ${JSON.stringify(value)}`)
  }
}
