import { afterEach, describe, expect, it, vi } from 'vitest'
import { createStorage, type Driver, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { createHistogram, merge, quantile, record, QUANTILE_PRECISION, type Histogram } from '../../src/stats/histogram'
import { createStatsWindow, type StatsOptions, type StatsWindow } from '../../src/stats/stats'
import { createInstanceRegistry } from '../../src/storage/registry'
import { createEventIngest } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'

const MINUTE = 60_000
const T0 = Date.UTC(2026, 10, 2, 14, 0, 30)

/** mulberry32: the same "random" lags on every run. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Log-normal lags clamped to 10 ms .. 10 min, whole milliseconds. */
function randomLags(n: number, seed = 1): number[] {
  const random = seeded(seed)
  const mu = Math.log(Math.sqrt(10 * 600_000))
  const sigma = (Math.log(600_000) - Math.log(10)) / 5
  return Array.from({ length: n }, () => {
    const gauss = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random())
    return Math.round(Math.min(600_000, Math.max(10, Math.exp(mu + sigma * gauss))))
  })
}

/** Nearest rank, the definition `quantile` follows. */
function exactQuantile(sorted: readonly number[], q: number): number {
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!
}

function expectWithinPrecision(actual: number | null, exact: number): void {
  expect(actual).not.toBeNull()
  expect(Math.abs(actual! - exact)).toBeLessThanOrEqual(QUANTILE_PRECISION * (exact + 1) + 1e-9)
}

/** A snapshot's lag figures are whole milliseconds: the histogram's answer, rounded. */
function expectWholeMsWithinPrecision(actual: number | null, exact: number): void {
  expect(Number.isInteger(actual)).toBe(true)
  expect(Math.abs(actual! - exact)).toBeLessThanOrEqual(QUANTILE_PRECISION * (exact + 1) + 0.5)
}

function event(name: string, source: string, occurredAt: number) {
  return { name, source, occurredAt: new Date(occurredAt).toISOString() }
}

const opened: StatsWindow[] = []
afterEach(async () => {
  await Promise.all(opened.splice(0).map((stats) => stats.close()))
  vi.useRealTimers()
})

function clock(start = T0) {
  const c = { t: start, now: () => c.t }
  return c
}

function open(options: Partial<StatsOptions> & { storage: Storage; now: () => number }): StatsWindow {
  const stats = createStatsWindow({ instanceId: 'a', flushIntervalMs: 0, ...options })
  opened.push(stats)
  return stats
}

/** Counts calls on the Storage API and on its driver underneath. */
function countedStorage() {
  const calls: Record<string, number> = {}
  const writes: { key: string; options: unknown }[] = []
  const count = <T extends object>(target: T, layer: string): T =>
    new Proxy(target, {
      get(object, property, receiver) {
        const value: unknown = Reflect.get(object, property, receiver)
        if (typeof value !== 'function') return value
        return (...args: unknown[]) => {
          const name = `${layer}.${String(property)}`
          calls[name] = (calls[name] ?? 0) + 1
          if (name === 'storage.setItems') {
            for (const item of args[0] as { key: string; options?: unknown }[]) writes.push({ key: item.key, options: item.options })
          }
          return (value as (...a: unknown[]) => unknown).apply(object, args)
        }
      },
    })
  const storage = count(createStorage({ driver: count<Driver>(memoryDriver(), 'driver') }), 'storage')
  const reset = () => {
    for (const name of Object.keys(calls)) delete calls[name]
    writes.length = 0
  }
  return { storage, calls, writes, reset }
}

describe('stats window: counts', () => {
  it('sums totals, byName and bySource over the window and fills a 60-minute series oldest first', async () => {
    const time = clock()
    const stats = open({ storage: createStorage(), now: time.now })
    stats.recordAccepted([event('OrderCreated', 'api', T0 - 1000), event('ProductViewed', 'storefront', T0 - 2000)], T0)
    stats.recordAccepted([event('OrderCreated', 'api', T0 - 5 * MINUTE)], T0 - 5 * MINUTE)
    stats.recordRejected(3, T0)
    stats.recordDuplicates(2, T0 - 5 * MINUTE)

    const snapshot = await stats.snapshot()
    expect(snapshot.windowMinutes).toBe(60)
    expect(snapshot.instances).toBe(1)
    expect(snapshot.totals).toEqual({ accepted: 3, duplicates: 2, rejected: 3 })
    expect(snapshot.byName).toEqual({ OrderCreated: 2, ProductViewed: 1 })
    expect(snapshot.bySource).toEqual({ api: 2, storefront: 1 })
    expect(snapshot.to).toBe(new Date(T0).toISOString())
    expect(snapshot.from).toBe('2026-11-02T13:01:00.000Z')

    expect(snapshot.series).toHaveLength(60)
    expect(snapshot.series[0]!.minute).toBe('2026-11-02T13:01:00.000Z')
    expect(snapshot.series[59]!.minute).toBe('2026-11-02T14:00:00.000Z')
    const minutes = snapshot.series.map((entry) => Date.parse(entry.minute))
    expect(minutes).toEqual([...minutes].sort((a, b) => a - b))
    expect(snapshot.series[59]).toEqual({
      minute: '2026-11-02T14:00:00.000Z',
      accepted: 2,
      rejected: 3,
      duplicates: 0,
      byName: { OrderCreated: 1, ProductViewed: 1 },
    })
    expect(snapshot.series[54]).toEqual({
      minute: '2026-11-02T13:55:00.000Z',
      accepted: 1,
      rejected: 0,
      duplicates: 2,
      byName: { OrderCreated: 1 },
    })
    const empty = snapshot.series.filter((_, i) => i !== 54 && i !== 59)
    expect(empty.every((e) => e.accepted === 0 && e.rejected === 0 && e.duplicates === 0)).toBe(true)
    expect(JSON.parse(JSON.stringify(snapshot))).toEqual(snapshot)
  })

  it('drops minutes that leave the window as time advances', async () => {
    const time = clock()
    const stats = open({ storage: createStorage(), now: time.now })
    stats.recordAccepted([event('OrderCreated', 'api', T0)], T0 - 5 * MINUTE)
    stats.recordAccepted([event('EmailSent', 'api', T0)], T0)

    time.t = T0 + 54 * MINUTE // 13:55, the minute of T0 - 5 min, is the oldest of the window
    expect((await stats.snapshot()).totals.accepted).toBe(2)

    time.t = T0 + 55 * MINUTE
    let snapshot = await stats.snapshot()
    expect(snapshot.totals.accepted).toBe(1)
    expect(snapshot.byName).toEqual({ EmailSent: 1 })
    expect(snapshot.series[0]).toMatchObject({ minute: '2026-11-02T13:56:00.000Z', accepted: 0 })

    time.t = T0 + 60 * MINUTE
    snapshot = await stats.snapshot()
    expect(snapshot.totals.accepted).toBe(0)
    expect(snapshot.series).toHaveLength(60)
    expect(snapshot.byName).toEqual({})
  })

  it('counts failures apart: rejected, storage, refused by code, forward failures by kind, and forwarded', async () => {
    const time = clock()
    const stats = open({ storage: createStorage(), now: time.now })
    stats.recordRejected(4, T0)
    stats.recordStorageFailure(50, T0)
    stats.recordRefused('token_invalid', T0)
    stats.recordRefused('token_invalid', T0 - MINUTE)
    stats.recordRefused('too_many_events', T0)
    stats.recordForwarded(120, T0)
    stats.recordForwardFailure('timeout', T0)
    stats.recordForwardFailure('5xx', T0)
    stats.recordForwardFailure('timeout', T0)

    const snapshot = await stats.snapshot()
    expect(snapshot.failures).toEqual({
      rejected: 4,
      storage: 50,
      forward: 3,
      forwardByKind: { timeout: 2, '5xx': 1 },
      refusedRequests: 3,
      refusedByCode: { token_invalid: 2, too_many_events: 1 },
    })
    expect(snapshot.forwarded).toBe(120)
    expect(snapshot.totals).toEqual({ accepted: 0, duplicates: 0, rejected: 4 })
  })

  it('refuses negative or fractional counts and a bad configuration', () => {
    const stats = open({ storage: createStorage(), now: () => T0 })
    expect(() => stats.recordRejected(-1, T0)).toThrow(RangeError)
    expect(() => stats.recordDuplicates(1.5, T0)).toThrow(RangeError)
    expect(() => stats.recordForwarded(1, Number.NaN)).toThrow(RangeError)
    expect(() => createStatsWindow({ storage: createStorage(), instanceId: '' })).toThrow(/instanceId/)
    expect(() => createStatsWindow({ storage: createStorage(), instanceId: 'a?b' })).toThrow(/instanceId/)
    expect(() => createStatsWindow({ storage: createStorage(), instanceId: 'a', windowMinutes: 0 })).toThrow(/windowMinutes/)
  })
})

describe('stats window: lag', () => {
  it('averages lag exactly and gives p50/p95/p99 within the histogram precision over 10,000 lags', async () => {
    const time = clock()
    const stats = open({ storage: createStorage(), now: time.now })
    const lags = randomLags(10_000)
    for (let i = 0; i < lags.length; i += 50) {
      const receivedAt = T0 - (i % 7) * MINUTE // spread over several buckets, merged on read
      stats.recordAccepted(
        lags.slice(i, i + 50).map((lag) => event('ProductViewed', 'storefront', receivedAt - lag)),
        receivedAt,
      )
    }
    const { lag } = await stats.snapshot()
    const sorted = [...lags].sort((a, b) => a - b)
    expect(lag.count).toBe(10_000)
    expect(lag.averageMs).toBe(Math.round(lags.reduce((a, b) => a + b, 0) / lags.length))
    expect(lag.maxMs).toBe(sorted.at(-1))
    expectWholeMsWithinPrecision(lag.p50Ms, exactQuantile(sorted, 0.5))
    expectWholeMsWithinPrecision(lag.p95Ms, exactQuantile(sorted, 0.95))
    expectWholeMsWithinPrecision(lag.p99Ms, exactQuantile(sorted, 0.99))
  })

  it('counts events beyond the future tolerance apart and keeps them out of lag; slightly ahead counts as 0', async () => {
    const stats = open({ storage: createStorage(), now: () => T0 })
    stats.recordAccepted(
      [
        event('OrderCreated', 'api', T0 - 400),
        event('OrderCreated', 'api', T0 + 2 * MINUTE), // ahead, within the 5-minute tolerance
        event('OrderCreated', 'api', T0 + 6 * MINUTE),
        event('OrderCreated', 'api', T0 + 24 * 60 * MINUTE),
      ],
      T0,
    )
    const snapshot = await stats.snapshot()
    expect(snapshot.totals.accepted).toBe(4)
    expect(snapshot.futureEvents).toBe(2)
    expect(snapshot.lag).toMatchObject({ count: 2, averageMs: 200, maxMs: 400, p50Ms: 0 })
  })

  it('answers lag figures in whole milliseconds', async () => {
    const stats = open({ storage: createStorage(), now: () => T0 })
    // Lags of 1, 2 and 4 ms average 2.333... ms; 60 lags near 30 s fall inside histogram buckets.
    stats.recordAccepted([1, 2, 4].map((lag) => event('OrderCreated', 'api', T0 - lag)), T0)
    const first = (await stats.snapshot()).lag
    expect(first).toEqual({ count: 3, averageMs: 2, p50Ms: 2, p95Ms: 4, p99Ms: 4, maxMs: 4 })
    stats.recordAccepted(Array.from({ length: 60 }, (_, i) => event('OrderCreated', 'api', T0 - 28_000 - i * 37)), T0)
    const { lag } = await stats.snapshot()
    for (const figure of [lag.averageMs, lag.p50Ms, lag.p95Ms, lag.p99Ms, lag.maxMs]) expect(Number.isInteger(figure), String(figure)).toBe(true)
  })

  it('counts events older than the past tolerance apart and keeps them out of lag, at the boundary', async () => {
    const stats = open({ storage: createStorage(), now: () => T0, pastToleranceMs: 3_600_000 })
    stats.recordAccepted(
      [
        event('OrderCreated', 'api', T0 - 1000),
        event('OrderCreated', 'api', T0 - 3_600_000), // exactly the tolerance: lag
        event('OrderCreated', 'api', T0 - 3_600_001), // one over: apart
        { name: 'OrderCreated', source: 'api', occurredAt: '0000-01-01T00:00:00.000Z' },
      ],
      T0,
    )
    const snapshot = await stats.snapshot()
    expect(snapshot.totals.accepted).toBe(4)
    expect(snapshot.pastEvents).toBe(2)
    expect(snapshot.futureEvents).toBe(0)
    expect(snapshot.lag).toMatchObject({ count: 2, averageMs: 1_800_500, maxMs: 3_600_000 })
  })

  it('keeps a week of past events in lag by default, and counts one year-0 event apart', async () => {
    const stats = open({ storage: createStorage(), now: () => T0 })
    const week = 7 * 24 * 60 * MINUTE
    stats.recordAccepted([event('OrderCreated', 'api', T0 - 200), event('OrderCreated', 'api', T0 - week)], T0)
    stats.recordAccepted([event('OrderCreated', 'api', T0 - week - 1)], T0)
    stats.recordAccepted([{ name: 'OrderCreated', source: 'api', occurredAt: '0000-01-01T00:00:00.000Z' }], T0)
    const snapshot = await stats.snapshot()
    expect(snapshot.pastEvents).toBe(2)
    expect(snapshot.lag).toMatchObject({ count: 2, maxMs: week, averageMs: Math.round((200 + week) / 2) })
  })

  it('takes pastToleranceMs: Infinity to keep every past event in lag, and refuses a bad one', async () => {
    expect(() => open({ storage: createStorage(), now: () => T0, pastToleranceMs: -1 })).toThrow(/pastToleranceMs/)
    expect(() => open({ storage: createStorage(), now: () => T0, pastToleranceMs: Number.NaN })).toThrow(/pastToleranceMs/)
    const stats = open({ storage: createStorage(), now: () => T0, pastToleranceMs: Infinity })
    stats.recordAccepted([{ name: 'OrderCreated', source: 'api', occurredAt: '0000-01-01T00:00:00.000Z' }], T0)
    const snapshot = await stats.snapshot()
    expect(snapshot.pastEvents).toBe(0)
    expect(snapshot.lag.maxMs).toBe(T0 - Date.parse('0000-01-01T00:00:00.000Z'))
  })

  it('refuses a bad stats.pastToleranceMs when the core is created', async () => {
    expect(() => createEventIngest({ env: {}, stats: { pastToleranceMs: -1 } })).toThrow(/^\[event-ingest\] stats\.pastToleranceMs must be a number >= 0 .*got -1$/)
    expect(() => createEventIngest({ env: {}, stats: { pastToleranceMs: '5' as never } })).toThrow(/stats\.pastToleranceMs/)
    await createEventIngest({ env: {}, stats: { pastToleranceMs: 0 } }).close()
  })

  it('takes stats.pastToleranceMs through createEventIngest', async () => {
    const ingest = createEventIngest({ env: {}, stats: { flushIntervalMs: 3_600_000, pastToleranceMs: 60_000 } })
    try {
      const now = Date.now()
      await ingest.ingest([makeEvent({ id: 'recent', occurredAt: new Date(now - 1000).toISOString() }), makeEvent({ id: 'old', occurredAt: new Date(now - 3_600_000).toISOString() })])
      const snapshot = await ingest.stats()
      expect(snapshot.pastEvents).toBe(1)
      expect(snapshot.lag.count).toBe(1)
    } finally {
      await ingest.close()
    }
  })

  it('reads event times of years before 1000 as Date.parse does (Date.UTC would shift 0-99 to 1900-1999)', async () => {
    const stats = open({ storage: createStorage(), now: () => T0, pastToleranceMs: Infinity })
    const occurredAt = '0050-06-01T00:00:00.000Z'
    stats.recordAccepted([{ name: 'OrderCreated', source: 'api', occurredAt } as never], T0)
    expect((await stats.snapshot()).lag.maxMs).toBe(T0 - Date.parse(occurredAt))
  })

  it('measures the lag of events ingested over HTTP in every timestamp form the model accepts', async () => {
    const ingest = createEventIngest({ env: {}, stats: { flushIntervalMs: 3_600_000, pastToleranceMs: Infinity } })
    try {
      const now = Date.now()
      const at = (lag: number) => new Date(now - lag)
      const forms = [
        at(1_234).toISOString(), // canonical: milliseconds and Z
        at(60_000).toISOString().replace(/\.\d{3}Z$/, 'Z'), // no milliseconds
        at(5_000).toISOString().replace('Z', '+00:00'), // an offset
        // Canonical, across leap days, century rules and years Date.UTC would misread.
        '2000-02-29T12:34:56.789Z', '1900-03-01T00:00:00.001Z', '0050-02-28T23:59:59.999Z', '0000-02-29T00:00:00.000Z',
      ]
      const body = JSON.stringify(forms.map((occurredAt, i) => makeEvent({ id: `lag-${i}`, occurredAt })))
      const response = await ingest.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json' }, body: { bytes: body } })
      expect(response?.body).toContain(`"accepted":${forms.length}`)
      const { lag } = await ingest.stats()
      const listed = (await ingest.events()).events
      const receivedAt = Date.parse(listed[0]!.receivedAt)
      const lags = forms.map((form) => receivedAt - Date.parse(form))
      expect(lag.count).toBe(forms.length)
      expect(lag.maxMs).toBe(Math.max(...lags))
      expect(lag.averageMs).toBe(Math.round(lags.reduce((a, b) => a + b, 0) / forms.length))
    } finally {
      await ingest.close()
    }
  })

  it('answers null lag figures while there is no lag', async () => {
    const snapshot = await open({ storage: createStorage(), now: () => T0 }).snapshot()
    expect(snapshot.lag).toEqual({ count: 0, averageMs: null, p50Ms: null, p95Ms: null, p99Ms: null, maxMs: null })
  })
})

describe('stats window: persistence', () => {
  it('sums two instances sharing one storage, once each, from either side', async () => {
    const time = clock()
    const storage = createStorage()
    const a = open({ storage, instanceId: 'web-1', now: time.now })
    const b = open({ storage, instanceId: 'web-2', now: time.now })
    a.recordAccepted([event('OrderCreated', 'api', T0 - 100), event('EmailSent', 'api', T0 - 300)], T0)
    b.recordAccepted([event('OrderCreated', 'api', T0 - 200)], T0)
    b.recordRefused('token_missing', T0)
    await a.flush()
    await b.flush()
    a.recordAccepted([event('CartUpdated', 'storefront', T0)], T0) // not flushed: a sees it, b does not yet

    const fromA = await a.snapshot()
    const fromB = await b.snapshot()
    expect(fromA.instances).toBe(2)
    expect(fromB.instances).toBe(2)
    expect(fromA.byName).toEqual({ OrderCreated: 2, EmailSent: 1, CartUpdated: 1 })
    expect(fromB.byName).toEqual({ OrderCreated: 2, EmailSent: 1 })
    expect(fromA.failures.refusedByCode).toEqual({ token_missing: 1 })
    expect(fromA.lag).toMatchObject({ count: 4, maxMs: 300, averageMs: 150 })

    await a.flush()
    expect((await b.snapshot()).totals.accepted).toBe(4)
    expect((await a.snapshot()).totals.accepted).toBe(4)
  })

  it('picks its counts back up after a restart with the same instanceId, once', async () => {
    const time = clock()
    const storage = createStorage()
    const before = open({ storage, instanceId: 'web-1', now: time.now })
    before.recordAccepted([event('OrderCreated', 'api', T0 - 1000)], T0 - 2 * MINUTE)
    before.recordAccepted([event('EmailSent', 'api', T0 - 1000)], T0)
    await before.close()

    time.t = T0 + 10_000
    const after = open({ storage, instanceId: 'web-1', now: time.now })
    after.recordAccepted([event('EmailSent', 'api', T0)], time.t) // before the lazy load
    let snapshot = await after.snapshot()
    expect(snapshot.instances).toBe(1)
    expect(snapshot.byName).toEqual({ OrderCreated: 1, EmailSent: 2 })
    expect(snapshot.lag.count).toBe(3)

    await after.flush()
    await after.flush()
    const again = open({ storage, instanceId: 'web-1', now: time.now })
    snapshot = await again.snapshot()
    expect(snapshot.byName).toEqual({ OrderCreated: 1, EmailSent: 2 })
  })

  it('keeps counts recorded while a flush is in flight', async () => {
    const time = clock()
    const storage = createStorage()
    const stats = open({ storage, now: time.now })
    stats.recordRejected(1, T0)
    const first = stats.flush()
    stats.recordRejected(1, T0)
    const second = stats.flush()
    await Promise.all([first, second])
    const reader = open({ storage, instanceId: 'b', now: time.now })
    expect((await reader.snapshot()).totals.rejected).toBe(2)
  })

  it('writes buckets under prefix:b:instance:minute with a TTL of two windows, and registers itself', async () => {
    const { storage, writes } = countedStorage()
    const stats = open({ storage, instanceId: 'web-1', prefix: 'ingest:stats', windowMinutes: 30, now: () => T0 })
    stats.recordDuplicates(1, T0)
    await stats.flush()
    const minute = Math.floor(T0 / MINUTE)
    expect(writes).toEqual([{ key: `ingest:stats:b:web-1:${minute}`, options: { ttl: 3600 } }])
    const registry = createInstanceRegistry({ storage, prefix: 'ingest:stats', instanceId: 'reader', staleAfterMs: 30 * MINUTE })
    expect(await registry.read(T0)).toEqual({ live: [{ id: 'web-1', seenAt: T0 }], stale: [] })
  })

  it('flushes on a timer', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] })
    const storage = createStorage()
    const stats = open({ storage, flushIntervalMs: 5000, now: () => T0 })
    stats.recordRejected(1, T0)
    await vi.advanceTimersByTimeAsync(5000)
    expect(await storage.getItem(`stats:b:a:${Math.floor(T0 / MINUTE)}`)).toMatchObject({ rejected: 1 })
  })

  it('ignores instances not seen within the window and reads no buckets of theirs', async () => {
    const time = clock()
    const { storage, calls, reset } = countedStorage()
    const gone = open({ storage, instanceId: 'gone', now: time.now })
    gone.recordAccepted([event('OrderCreated', 'api', T0)], T0)
    await gone.flush()

    time.t = T0 + 63 * MINUTE
    const stats = open({ storage, instanceId: 'a', now: time.now })
    await stats.snapshot() // the lazy load
    reset()
    const snapshot = await stats.snapshot()
    expect(snapshot.instances).toBe(1)
    // The memory driver's registry lives beside its map (src/storage/registry.ts): no storage call.
    expect(calls).toEqual({})
  })
})

describe('stats window: cost', () => {
  async function snapshotCalls(events: number) {
    const { storage, calls, reset } = countedStorage()
    const a = open({ storage, instanceId: 'a', now: () => T0 })
    const b = open({ storage, instanceId: 'b', now: () => T0 })
    for (let i = 0; i < events; i += 50) {
      const receivedAt = T0 - ((i / 50) % 60) * MINUTE
      const batch = Array.from({ length: 50 }, (_, j) => event(j % 2 ? 'OrderCreated' : 'CartUpdated', 'api', receivedAt - j))
      ;(i % 100 ? a : b).recordAccepted(batch, receivedAt)
    }
    await b.flush()
    await a.flush()
    reset()
    const snapshot = await a.snapshot()
    expect(snapshot.totals.accepted).toBe(events)
    return { ...calls }
  }

  it('makes the same storage calls for a snapshot after 1,000 and 100,000 events, and never getKeys', async () => {
    const small = await snapshotCalls(1_000)
    const large = await snapshotCalls(100_000)
    expect(large).toEqual(small)
    // One getItems for the other instance's 60 minutes (the memory driver reads them one by one); the
    // memory driver's registry lives beside its map, with no storage call.
    expect(small).toEqual({ 'storage.getItems': 1, 'driver.getItem': 60 })
  })

  it('never lists keys, whether recording, flushing, restarting or reading', async () => {
    const { storage, calls } = countedStorage()
    const a = open({ storage, instanceId: 'a', now: () => T0 })
    a.recordAccepted([event('OrderCreated', 'api', T0)], T0)
    await a.close()
    const again = open({ storage, instanceId: 'a', now: () => T0 })
    await again.snapshot()
    await again.flush()
    expect(Object.keys(calls).filter((name) => /getKeys|\.keys$/.test(name))).toEqual([])
  })
})

describe('histogram', () => {
  it('merges associatively: parts merged in any grouping equal recording everything', () => {
    const values = randomLags(3000, 7)
    const whole = createHistogram()
    for (const value of values) record(whole, value)
    const parts = [0, 1, 2].map((part) => {
      const h = createHistogram()
      for (const value of values.slice(part * 1000, part * 1000 + 1000)) record(h, value)
      return h
    })
    const copy = (h: Histogram): Histogram => JSON.parse(JSON.stringify(h)) as Histogram
    const left = merge(merge(copy(parts[0]!), parts[1]!), parts[2]!)
    const right = merge(copy(parts[0]!), merge(copy(parts[1]!), parts[2]!))
    const reversed = merge(merge(copy(parts[2]!), parts[1]!), parts[0]!)
    expect(left).toEqual(whole)
    expect(right).toEqual(whole)
    expect(reversed).toEqual(whole)
    expect(merge(createHistogram(), whole)).toEqual(whole)
    expect(merge(copy(whole), createHistogram())).toEqual(whole)
  })

  it('answers every quantile within 1% of v + 1 of the exact value', () => {
    const values = [...randomLags(5000, 3), 0, 0, 1, 2, 3, 49, 50, 51, 0.25]
    const h = createHistogram()
    for (const value of values) record(h, value)
    const sorted = [...values].sort((a, b) => a - b)
    for (let q = 0; q <= 1; q += 0.005) expectWithinPrecision(quantile(h, q), exactQuantile(sorted, q))
    expect(quantile(h, 0)).toBe(0)
    expect(quantile(h, 1)).toBe(sorted.at(-1))
  })

  it('is sparse and survives JSON', () => {
    const h = createHistogram()
    record(h, 10)
    record(h, 10)
    record(h, 600_000)
    expect(Object.keys(h.buckets)).toHaveLength(2)
    expect(JSON.parse(JSON.stringify(h))).toEqual(h)
    expect(quantile(createHistogram(), 0.5)).toBeNull()
    expect(() => record(h, -1)).toThrow(RangeError)
    expect(() => record(h, Number.NaN)).toThrow(RangeError)
    expect(() => quantile(h, 1.5)).toThrow(RangeError)
  })
})
