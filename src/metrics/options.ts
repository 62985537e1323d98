/**
 * The part of a prom-client `Registry` event-ingest uses: any prom-client `Registry` is one. Its
 * own type, so a host's declarations never need prom-client's.
 */
export interface MetricsRegistry {
  registerMetric(metric: never): void
  getSingleMetric(name: string): unknown
  removeSingleMetric(name: string): void
  metrics(): Promise<string>
  readonly contentType: string
}

/** Options of the Prometheus metrics (`metrics: true` takes every default). */
export interface MetricsOptions {
  /**
   * A host's prom-client `Registry`, so its own metrics and these are scraped together.
   * @default a registry of event-ingest's own
   */
  registry?: MetricsRegistry
  /**
   * Prefix of every metric name: letters, digits and `_`, not starting with a digit.
   * @default 'event_ingest_'
   */
  prefix?: string
  /**
   * Upper bounds, in seconds, of the ingest lag and clock skew histograms.
   * @default [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400]
   */
  lagBuckets?: readonly number[]
  /**
   * Upper bounds, in seconds, of the delivery histograms (one attempt's time, and a batch's time
   * from receipt to the sink taking it).
   * @default [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600]
   */
  deliveryBuckets?: readonly number[]
}

/** Metrics options with every default applied. */
export interface ResolvedMetricsOptions {
  readonly registry: MetricsRegistry | undefined
  readonly prefix: string
  readonly lagBuckets: readonly number[]
  readonly deliveryBuckets: readonly number[]
}

export const metricsDefaults = Object.freeze({
  prefix: 'event_ingest_',
  lagBuckets: Object.freeze([0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400]),
  deliveryBuckets: Object.freeze([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600]),
})

const optionKeys = new Set(['registry', 'prefix', 'lagBuckets', 'deliveryBuckets'])

/**
 * Resolves `metrics` (or, when it is undefined, `EVENT_METRICS`: `1`/`true` on, `0`/`false`/empty
 * off). Undefined: metrics are off. A bad value throws naming `metrics.<field>` or the variable.
 */
export function resolveMetricsOptions(option: unknown, variable: string | undefined): ResolvedMetricsOptions | undefined {
  if (option === undefined) {
    if (variable === undefined) return undefined
    const value = variable.trim().toLowerCase()
    if (value === '1' || value === 'true') return resolved({})
    if (value === '0' || value === 'false' || value === '') return undefined
    throw new TypeError(`must be 1, true, 0 or false, got ${JSON.stringify(variable)}`)
  }
  if (option === false) return undefined
  if (option === true) return resolved({})
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw new TypeError(`[event-ingest] metrics must be true, false or an object { registry, prefix, lagBuckets, deliveryBuckets }, got ${JSON.stringify(option)}`)
  }
  for (const key of Object.keys(option)) {
    if (!optionKeys.has(key)) throw new TypeError(`[event-ingest] metrics.${key} is not an option; expected one of ${[...optionKeys].join(', ')}`)
  }
  return resolved(option as MetricsOptions)
}

function resolved(options: MetricsOptions): ResolvedMetricsOptions {
  const { registry } = options
  if (registry !== undefined && (typeof registry !== 'object' || registry === null || typeof (registry as MetricsRegistry).registerMetric !== 'function' || typeof (registry as MetricsRegistry).metrics !== 'function')) {
    throw new TypeError('[event-ingest] metrics.registry must be a prom-client Registry')
  }
  const prefix = options.prefix ?? metricsDefaults.prefix
  if (typeof prefix !== 'string' || !/^([a-zA-Z_][a-zA-Z0-9_]*)?$/.test(prefix)) {
    throw new TypeError(`[event-ingest] metrics.prefix must match [a-zA-Z_][a-zA-Z0-9_]* (or be empty), got ${JSON.stringify(prefix)}`)
  }
  // Checked now: prom-client would refuse the second registration only once storage opens.
  if (registry?.getSingleMetric(`${prefix}events_accepted_total`)) {
    throw new TypeError(`[event-ingest] metrics.registry already holds event-ingest's metrics under the prefix ${JSON.stringify(prefix)}: give each core in one registry its own metrics.prefix`)
  }
  return Object.freeze({
    registry,
    prefix,
    lagBuckets: checkBuckets('lagBuckets', options.lagBuckets) ?? metricsDefaults.lagBuckets,
    deliveryBuckets: checkBuckets('deliveryBuckets', options.deliveryBuckets) ?? metricsDefaults.deliveryBuckets,
  })
}

function checkBuckets(name: string, buckets: unknown): readonly number[] | undefined {
  if (buckets === undefined) return undefined
  const ok = Array.isArray(buckets) && buckets.length > 0 && buckets.every((b, i) => typeof b === 'number' && Number.isFinite(b) && b > 0 && (i === 0 || b > buckets[i - 1]))
  if (!ok) throw new TypeError(`[event-ingest] metrics.${name} must be a non-empty array of increasing positive finite seconds, got ${JSON.stringify(buckets)}`)
  return Object.freeze([...(buckets as number[])])
}
