import type { Counter, Registry } from 'prom-client'
import type { ForwardingState } from '../forward/types'
import type { StatsEvent, StatsWindow } from '../stats/window'
import { SecondsHistogram } from './histogram'
import type { ResolvedMetricsOptions } from './options'

type PromClient = typeof import('prom-client')

/** The stats window's bounds of lag, in ms. */
export interface LagTolerances {
  readonly futureToleranceMs: number
  readonly pastToleranceMs: number
}

/** The Prometheus metrics of one core: counters updated per batch, gauges read at scrape time. */
export interface IngestMetrics {
  readonly registry: Registry
  /**
   * The stats window, counting into these metrics too. Lag leaves out what the stats leave out:
   * events more than `futureToleranceMs` ahead of receipt or `pastToleranceMs` behind it.
   */
  meter(stats: StatsWindow, tolerances: LagTolerances): StatsWindow
  /** The whole registry in the text exposition format. */
  text(): Promise<string>
  readonly contentType: string
  /** Removes these metrics from the registry (a host's registry outlives the core). */
  close(): void
}

const missingPromClient = '[event-ingest] metrics need the "prom-client" package, which is not installed: npm install prom-client'

/** Loads prom-client, an optional peer: missing, the error says to install it. */
export async function loadPromClient(): Promise<PromClient> {
  try {
    const loaded = (await import('prom-client')) as PromClient & { default?: PromClient }
    return loaded.Registry ? loaded : loaded.default!
  } catch (error) {
    throw new Error(missingPromClient, { cause: error })
  }
}

/**
 * Registers the metrics in `options.registry` (or a registry of their own). `forwarding` is read
 * when the registry is scraped: the outbox state is kept in memory, so a scrape never waits on storage.
 */
export function createIngestMetrics(client: PromClient, options: ResolvedMetricsOptions, forwarding: (() => ForwardingState) | undefined): IngestMetrics {
  const registry = (options.registry as Registry | undefined) ?? new client.Registry()
  const p = options.prefix
  const registers = [registry]
  /** The names registered here, the only ones close() removes. */
  const mine: string[] = []
  const named = <T>(name: string, make: () => T): T => {
    const metric = make()
    mine.push(name)
    return metric
  }
  const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) => named(p + name, () => new client.Counter<L>({ name: p + name, help, labelNames, registers }))
  const histogram = (name: string, help: string, buckets: readonly number[]) => named(p + name, () => new SecondsHistogram(p + name, help, buckets, registry))

  const accepted = counter('events_accepted_total', 'Events validated and stored (duplicates excluded).')
  const duplicates = counter('events_duplicate_total', 'Events not stored again: their id was already stored within the dedupe window.')
  const rejected = counter('events_rejected_total', 'Invalid events inside accepted requests.')
  const refused = counter('requests_refused_total', 'Whole ingest requests refused, by error code (token_invalid, body_too_large, rate_limited...).', ['code'])
  const storageFailures = counter('storage_failures_total', 'Events of requests answered 503 because storage failed.')
  const lag = histogram('ingest_lag_seconds', 'receivedAt - occurredAt of accepted events (skew-corrected), events in the future counted as 0.', options.lagBuckets)
  const skew = histogram('clock_skew_seconds', 'Absolute producer clock skew corrected per batch (x-event-sent-at).', options.lagBuckets)
  const forwarded = counter('forward_events_delivered_total', 'Events delivered to the sink.')
  const attempts = counter('forward_attempts_total', 'Delivery attempts to the sink, by outcome (success, timeout, network, 5xx, 429, rejected, partial...).', ['outcome'])
  const failures = counter('forward_failures_total', 'Failed delivery attempts, by kind.', ['kind'])
  const attemptTime = histogram('forward_attempt_duration_seconds', 'Time the sink took to answer one delivery attempt (or to fail it).', options.deliveryBuckets)
  const deliveryLatency = histogram('forward_delivery_latency_seconds', 'Time from a batch\'s receipt to the sink taking it (a 2xx answer), per batch.', options.deliveryBuckets)

  if (forwarding) {
    const gauge = (name: string, help: string, read: (state: ForwardingState) => number) =>
      named(p + name, () => new client.Gauge({
        name: p + name,
        help,
        registers,
        collect() {
          this.set(read(forwarding()))
        },
      }))
    gauge('forward_backlog_batches', 'Batches waiting in this instance\'s outbox.', (s) => s.backlog)
    gauge('forward_backlog_events', 'Events in the batches waiting in the outbox.', (s) => s.backlogEvents)
    gauge('forward_oldest_pending_seconds', 'Age of the oldest batch waiting in the outbox; 0 when none.', (s) => (s.oldestPendingMs ?? 0) / 1000)
    gauge('forward_dead_letters', 'Batches in the dead-letter record (refused by the sink for good).', (s) => s.deadLetters)
  }

  return {
    registry,
    contentType: registry.contentType,
    text: () => registry.metrics(),
    close() {
      for (const name of mine) registry.removeSingleMetric(name)
    },
    meter: (stats, tolerances) => meteredStats(stats, tolerances, { accepted, duplicates, rejected, refused, storageFailures, lag, skew, forwarded, attempts, failures, attemptTime, deliveryLatency }),
  }
}

interface Instruments {
  accepted: Counter
  duplicates: Counter
  rejected: Counter
  refused: Counter<'code'>
  storageFailures: Counter
  lag: SecondsHistogram
  skew: SecondsHistogram
  forwarded: Counter
  attempts: Counter<'outcome'>
  failures: Counter<'kind'>
  attemptTime: SecondsHistogram
  deliveryLatency: SecondsHistogram
}

/** A stats window that also counts into the metrics; every call is passed on unchanged. */
function meteredStats(stats: StatsWindow, { futureToleranceMs, pastToleranceMs }: LagTolerances, m: Instruments): StatsWindow {
  const overrides: Partial<StatsWindow> = {
    recordAccepted(events: readonly StatsEvent[], receivedAt: number, times?: readonly number[], skewMs?: number, keyId?: string) {
      stats.recordAccepted(events, receivedAt, times, skewMs, keyId)
      if (events.length === 0) return
      m.accepted.inc(events.length)
      const corrected = skewMs ?? 0
      for (let i = 0; i < events.length; i++) {
        let at = times?.[i] ?? Number.NaN
        if (at !== at) at = Date.parse(events[i]!.occurredAt)
        if (at !== at) continue
        const ms = receivedAt - (at + corrected)
        if (ms > pastToleranceMs || ms < -futureToleranceMs) continue
        m.lag.observe(ms > 0 ? ms / 1000 : 0)
      }
    },
    recordSkew(kind, skewMs, receivedAt) {
      stats.recordSkew(kind, skewMs, receivedAt)
      if (kind === 'corrected') m.skew.observe(Math.abs(skewMs) / 1000)
    },
    recordRejected(count, receivedAt) {
      stats.recordRejected(count, receivedAt)
      m.rejected.inc(count)
    },
    recordDuplicates(count, receivedAt) {
      stats.recordDuplicates(count, receivedAt)
      m.duplicates.inc(count)
    },
    recordStorageFailure(events, receivedAt) {
      stats.recordStorageFailure(events, receivedAt)
      m.storageFailures.inc(events)
    },
    recordRefused(code, receivedAt) {
      stats.recordRefused(code, receivedAt)
      m.refused.inc({ code })
    },
    recordForwarded(events, at) {
      stats.recordForwarded(events, at)
      m.forwarded.inc(events)
      m.attempts.inc({ outcome: 'success' })
    },
    recordForwardFailure(kind, at) {
      stats.recordForwardFailure(kind, at)
      m.failures.inc({ kind })
      m.attempts.inc({ outcome: kind })
    },
    recordDeliveryTimes(attemptMs, sinceReceiptMs) {
      m.attemptTime.observe(attemptMs / 1000)
      for (const ms of sinceReceiptMs) m.deliveryLatency.observe(ms > 0 ? ms / 1000 : 0)
    },
  }
  return new Proxy(stats, {
    get(target, property, receiver) {
      const own = (overrides as Record<PropertyKey, unknown>)[property]
      if (own !== undefined) return own
      const value = Reflect.get(target, property, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}
