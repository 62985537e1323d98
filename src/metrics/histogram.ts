import type { Registry } from 'prom-client'

/**
 * A Prometheus histogram observed with no allocation (prom-client's `observe` builds a label
 * object per call): counts per bucket in a typed array, registered in a prom-client registry as a
 * metric of its own and exported in the same shape as prom-client's histograms.
 */
export class SecondsHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  /** Observations per bucket, not cumulative; the last is `+Inf`. */
  private readonly counts: Float64Array
  private sum = 0
  private count = 0

  constructor(readonly name: string, readonly help: string, private readonly bounds: readonly number[], registry: Registry) {
    this.counts = new Float64Array(bounds.length + 1)
    registry.registerMetric(this as never)
  }

  observe(seconds: number): void {
    const { bounds } = this
    let i = 0
    while (i < bounds.length && seconds > bounds[i]!) i++
    this.counts[i]!++
    this.sum += seconds
    this.count++
  }

  /** What prom-client's registry formats: cumulative `_bucket` lines, then `_sum` and `_count`. */
  get() {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = []
    let cumulative = 0
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += this.counts[i]!
      values.push({ metricName: `${this.name}_bucket`, labels: { le: i < this.bounds.length ? this.bounds[i]! : '+Inf' }, value: cumulative })
    }
    values.push({ metricName: `${this.name}_sum`, labels: {}, value: this.sum }, { metricName: `${this.name}_count`, labels: {}, value: this.count })
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  reset(): void {
    this.counts.fill(0)
    this.sum = 0
    this.count = 0
  }
}
