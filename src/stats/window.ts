import { addBucket, addTo, emptyBucket, MINUTE, serialiseBucket, type Bucket, type CounterField } from './bucket'
import { record } from './histogram'
import { canonicalTime } from '../model/time'
import type { RedactionCounts } from '../model/redact'
import { createInstanceRegistry, type InstanceRegistry } from '../storage/registry'
import { bucketKey, readBuckets, readExactAccepted, summarise, withExactAccepted, type BucketPlace, type StatsSnapshot } from './snapshot'

/** How stale this instance's registry entry may get before it is written again. */
const REGISTRY_REFRESH_MS = MINUTE
/**
 * An instance's last-seen time may lag its newest bucket by up to {@link REGISTRY_REFRESH_MS}; one
 * more minute absorbs clock skew between instances.
 */
const REGISTRY_GRACE_MS = 2 * MINUTE

/** The fields of an accepted event that stats read. */
export interface StatsEvent {
  name: string
  source: string
  /** ISO 8601 UTC. */
  occurredAt: string
}

/**
 * Last-hour counters of the ingest service, kept in per-minute buckets per instance. Recording is
 * synchronous and O(1) per event; reading costs a fixed number of storage calls per instance,
 * whatever the volume. Counts are bucketed by the minute they were received (or forwarded).
 */
export interface StatsWindow {
  /** Counts accepted events by name and source, and their lag `receivedAt - occurredAt`. */
  /**
   * `times`, when given, holds each event's `occurredAt` in ms (NaN where not known); `skewMs`,
   * the clock skew corrected for the batch: lag is counted from `occurredAt + skewMs`. `keyId`:
   * the public id of the publishable key the batch came with, counted in `byKey`.
   */
  recordAccepted(events: readonly StatsEvent[], receivedAt: number, times?: readonly number[], skewMs?: number, keyId?: string): void
  /** Counts a batch whose send time was judged: `corrected` by `skewMs`, or `ignored`. */
  recordSkew(kind: 'corrected' | 'ignored', skewMs: number, receivedAt: number): void
  /** Counts stored events that had fields redacted, and those fields by action (undefined entries: none). */
  recordRedacted(counts: readonly (RedactionCounts | undefined)[], receivedAt: number): void
  /** Counts invalid events inside accepted requests. */
  recordRejected(count: number, receivedAt: number): void
  /** Counts events already stored before (same id). */
  recordDuplicates(count: number, receivedAt: number): void
  /** Counts the events of a request that failed with 503 because storage failed. */
  recordStorageFailure(events: number, receivedAt: number): void
  /** Counts a whole request refused (401, 413, 400...) under its error code. */
  recordRefused(code: string, receivedAt: number): void
  /** Counts a request refused by a rate limit (429), by the limit's name (`perAddress`, `perToken`, `perSource`). */
  recordRateLimited(limit: string, at: number): void
  /** Counts a rate-limit check the shared store could not answer (counted in the process instead). */
  recordRateLimitStoreError(at: number): void
  /** Counts events delivered to the forwarding sink. */
  recordForwarded(events: number, at: number): void
  /**
   * Counts a forward failure by kind: `timeout`, `network`, `5xx`, `408`, `425`, `429`, `rejected` (a
   * permanent 4xx), `partial` (a 2xx that listed rejected events).
   */
  recordForwardFailure(kind: string, at: number): void
  /**
   * Times one delivery attempt: how long the sink took to answer, and for each batch it took, the
   * time from the batch's receipt to now. Not part of the stats window (the metrics observe it).
   */
  recordDeliveryTimes(attemptMs: number, sinceReceiptMs: readonly number[]): void
  /** Sums the window over every instance seen in it. */
  snapshot(): Promise<StatsSnapshot>
  /** Writes this instance's changed buckets now. */
  flush(): Promise<void>
  /** Stops the flush timer and flushes. */
  close(): Promise<void>
}

/** The settings of one instance's window, every default applied and checked. */
export interface WindowSettings extends BucketPlace {
  instanceId: string
  futureToleranceMs: number
  pastToleranceMs: number
  flushIntervalMs: number
  onError: (error: unknown) => void
  now: () => number
  /** The batch write counts stored events exactly (see StatsOptions.exactAccepted). */
  exactAccepted: boolean
}

/**
 * The stats window of one instance, in memory: its buckets of the window's minutes, which of them
 * changed since the last write, and the flush that writes them.
 */
export class InstanceWindow implements StatsWindow {
  private readonly buckets = new Map<number, Bucket>()
  /** Minutes counted since their last write. */
  private readonly dirty = new Set<number>()
  /** The minute counted last and its bucket: nearly every count falls in the same minute. */
  private currentMinute = Number.NaN
  private current: Bucket | undefined
  /** This instance's stored minutes, loaded once. */
  private restored: Promise<void> | undefined
  /** When the registry last held this instance. */
  private registeredAt = Number.NEGATIVE_INFINITY
  /** The flush under way (or the last one), so the next waits for it. */
  private flushing: Promise<void> = Promise.resolve()
  private timer: ReturnType<typeof setInterval> | undefined
  /**
   * The instances writing buckets to this storage (at `<prefix>:seen`), each with when it was last
   * seen: a snapshot reads the buckets of those seen in the window.
   */
  private readonly registry: InstanceRegistry
  private readonly ttl: number

  constructor(private readonly settings: Readonly<WindowSettings>) {
    const { storage, prefix, instanceId, windowMinutes } = settings
    // An instance not seen for the window (and the grace) has no bucket left in it.
    this.registry = createInstanceRegistry({ storage, prefix, instanceId, staleAfterMs: windowMinutes * MINUTE + REGISTRY_GRACE_MS })
    this.ttl = settings.windowMinutes * 60 * 2
    if (settings.flushIntervalMs > 0) {
      this.timer = setInterval(() => this.flush().catch(settings.onError), settings.flushIntervalMs)
      this.timer.unref()
    }
  }

  recordAccepted(events: readonly StatsEvent[], receivedAt: number, times?: readonly number[], skewMs = 0, keyId?: string): void {
    if (events.length === 0) return
    const { futureToleranceMs, pastToleranceMs } = this.settings
    const bucket = this.bucketAt(receivedAt)
    bucket.accepted += events.length
    if (keyId !== undefined) bucket.byKey.set(keyId, (bucket.byKey.get(keyId) ?? 0) + events.length)
    const { byName, bySource, lag } = bucket
    const timed = times !== undefined && times.length === events.length
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      byName.set(event.name, (byName.get(event.name) ?? 0) + 1)
      bySource.set(event.source, (bySource.get(event.source) ?? 0) + 1)
      const known = timed ? times[i]! : Number.NaN
      const ms = receivedAt - (known === known ? known : timeOf(event.occurredAt)) - skewMs
      if (ms > pastToleranceMs) bucket.pastEvents++
      else if (ms >= 0) record(lag, ms)
      else if (ms >= -futureToleranceMs) record(lag, 0)
      else if (ms < 0) bucket.futureEvents++
      // NaN (an unparseable occurredAt) has no lag; validation should have refused it.
    }
  }

  recordSkew(kind: 'corrected' | 'ignored', skewMs: number, receivedAt: number): void {
    const bucket = this.bucketAt(receivedAt)
    if (kind === 'ignored') bucket.skewIgnored++
    else {
      bucket.skewCorrected++
      record(bucket.skew, Math.round(Math.abs(skewMs)))
    }
  }

  recordRedacted(counts: readonly (RedactionCounts | undefined)[], receivedAt: number): void {
    let bucket: Bucket | undefined
    for (const tally of counts) {
      if (!tally) continue
      bucket ??= this.bucketAt(receivedAt)
      bucket.redactedEvents++
      bucket.redactedDropped += tally.dropped
      bucket.redactedMasked += tally.masked
      bucket.redactedHashed += tally.hashed
    }
  }

  recordRejected(count: number, receivedAt: number): void {
    this.addCount(receivedAt, 'rejected', count)
  }

  recordDuplicates(count: number, receivedAt: number): void {
    this.addCount(receivedAt, 'duplicates', count)
  }

  recordStorageFailure(events: number, receivedAt: number): void {
    this.addCount(receivedAt, 'storageFailures', events)
  }

  recordRefused(code: string, receivedAt: number): void {
    const bucket = this.bucketAt(receivedAt)
    bucket.refused++
    addTo(bucket.refusedByCode, code)
  }

  recordRateLimited(limit: string, at: number): void {
    addTo(this.bucketAt(at).rateLimitedBy, limit)
  }

  recordRateLimitStoreError(at: number): void {
    this.addCount(at, 'rateLimitStoreErrors', 1)
  }

  recordForwarded(events: number, at: number): void {
    this.addCount(at, 'forwarded', events)
  }

  recordForwardFailure(kind: string, at: number): void {
    const bucket = this.bucketAt(at)
    bucket.forwardFailures++
    addTo(bucket.forwardByKind, kind)
  }

  recordDeliveryTimes(): void {}

  async snapshot(): Promise<StatsSnapshot> {
    await this.restore()
    const { instanceId, windowMinutes } = this.settings
    const at = this.settings.now()
    const oldest = this.oldestMinute(at)
    const { live, stale } = await this.registry.read(at)
    const seen = [...live, ...stale]
    const own = seen.find((instance) => instance.id === instanceId)?.seenAt
    // Written again at the next flush when the registry lost it (or it is old).
    if (own === undefined || at - own >= REGISTRY_REFRESH_MS) this.registeredAt = Number.NEGATIVE_INFINITY
    const seenSince = oldest * MINUTE - REGISTRY_GRACE_MS
    const others = seen.filter((instance) => instance.id !== instanceId && instance.seenAt >= seenSince).map((instance) => instance.id)
    const [theirs, exact] = await Promise.all([readBuckets(this.settings, others, oldest), this.settings.exactAccepted ? readExactAccepted(this.settings, oldest) : undefined])
    this.prune()
    const snapshot = summarise(windowMinutes, oldest, at, [this.buckets, ...theirs])
    return exact ? withExactAccepted(snapshot, exact) : snapshot
  }

  flush(): Promise<void> {
    // One flush at a time: an older write landing after a newer one would lose counts.
    const write = () => this.writeDirty()
    const run = this.flushing.then(write, write)
    this.flushing = run.catch(() => {})
    return run
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await this.flush()
  }

  private oldestMinute(at: number): number {
    return Math.floor(at / MINUTE) - this.settings.windowMinutes + 1
  }

  private bucketAt(at: number): Bucket {
    const minute = Math.floor(at / MINUTE)
    if (minute === this.currentMinute && this.current) {
      this.dirty.add(minute)
      return this.current
    }
    let bucket = this.buckets.get(minute)
    if (!bucket) {
      if (!Number.isFinite(minute)) throw new RangeError(`the time of a count must be a finite number of ms, got ${at}`)
      this.prune()
      bucket = emptyBucket()
      this.buckets.set(minute, bucket)
    }
    this.currentMinute = minute
    this.current = bucket
    this.dirty.add(minute)
    return bucket
  }

  /** Memory drivers ignore the TTL, so drop our own expired minutes here. */
  private prune(): void {
    const oldest = this.oldestMinute(this.settings.now())
    for (const minute of this.buckets.keys()) {
      if (minute < oldest) {
        this.buckets.delete(minute)
        this.dirty.delete(minute)
        if (minute === this.currentMinute) this.current = undefined
      }
    }
  }

  private addCount(at: number, field: CounterField, count: number): void {
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be an integer >= 0, got ${count}`)
    if (count > 0) this.bucketAt(at)[field] += count
  }

  /** Loads this instance's stored minutes once, so a restart neither loses nor doubles counts. */
  private restore(): Promise<void> {
    this.restored ??= (async () => {
      const [stored] = await readBuckets(this.settings, [this.settings.instanceId], this.oldestMinute(this.settings.now()))
      for (const [minute, found] of stored ?? []) {
        let bucket = this.buckets.get(minute)
        if (!bucket) this.buckets.set(minute, (bucket = emptyBucket()))
        addBucket(bucket, found)
      }
    })().catch((error: unknown) => {
      this.restored = undefined
      throw error
    })
    return this.restored
  }

  /**
   * Records this instance as seen, about once a minute, and removes instances not seen for the
   * window: no bucket of theirs is left in it.
   */
  private async register(at: number): Promise<void> {
    await this.registry.register(at)
    this.registeredAt = at
    const { stale } = await this.registry.read(at)
    if (stale.length > 0) await this.registry.removeStale(stale)
  }

  private async writeDirty(): Promise<void> {
    await this.restore()
    this.prune()
    if (this.dirty.size === 0) return
    const { storage, instanceId } = this.settings
    const at = this.settings.now()
    if (at - this.registeredAt >= REGISTRY_REFRESH_MS) await this.register(at)
    // Serialised before the write, so counts recorded meanwhile mark the minute dirty again.
    const minutes = [...this.dirty]
    this.dirty.clear()
    const items = minutes.flatMap((minute) => {
      const bucket = this.buckets.get(minute)
      return bucket ? [{ key: bucketKey(this.settings, instanceId, minute), value: serialiseBucket(bucket), options: { ttl: this.ttl } }] : []
    })
    try {
      await storage.setItems(items)
    } catch (error) {
      for (const minute of minutes) if (this.buckets.has(minute)) this.dirty.add(minute)
      throw error
    }
  }
}

/** The time of an `occurredAt`: the canonical form read by hand, anything else by `Date.parse`. */
function timeOf(iso: string): number {
  const time = canonicalTime(iso)
  return time === time ? time : Date.parse(iso)
}
