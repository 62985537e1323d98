import { createServer } from 'node:http'
import { afterAll, describe, expect, it } from 'vitest'
import { Counter, Registry } from 'prom-client'
import { createStorage, defineDriver } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { createEventIngest, type EventIngest } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { postEvents, rawRequest } from '../helpers/http'
import { parsePrometheus } from '../helpers/prometheus'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'
import { closeServer, h3Host, listen, startHost } from '../helpers/servers'
import { startSink, waitFor } from '../helpers/sink'

const ADMIN = 'metrics-admin-token'
const admin = { authorization: `Bearer ${ADMIN}` }
const HOUR = 3_600_000

async function scrape(url: string) {
  const res = await rawRequest(`${url}/admin/metrics`, { method: 'GET', headers: admin })
  expect(res.status, res.text).toBe(200)
  return parsePrometheus(res.text)
}

describe('metricsHandler: the metrics on an internal port', () => {
  it('answers the scrape without admin auth, on its own server', async () => {
    const ingest = createEventIngest({ env: {}, metrics: true })
    await ingest.ingest([makeEvent({ id: 'own-1' }), makeEvent({ id: 'own-2' })])
    const server = createServer(ingest.metricsHandler)
    const url = await listen(server)
    try {
      const res = await rawRequest(`${url}/metrics`, { method: 'GET' })
      expect(res.status).toBe(200)
      expect(res.headers['content-type']).toContain('version=0.0.4')
      expect(parsePrometheus(res.text).value('event_ingest_events_accepted_total')).toBe(2)
      // ingest.metrics() is the same text.
      expect(parsePrometheus(await ingest.metrics()).value('event_ingest_events_accepted_total')).toBe(2)
    } finally {
      await closeServer(server)
      await ingest.close()
    }
  })

  it('answers 404 metrics_disabled on the internal port when metrics are off, and metrics() rejects naming it', async () => {
    const ingest = createEventIngest({ env: {} })
    const server = createServer(ingest.metricsHandler)
    const url = await listen(server)
    try {
      const res = await rawRequest(`${url}/metrics`, { method: 'GET' })
      expect(res.status).toBe(404)
      expect(res.json.code).toBe('metrics_disabled')
      await expect(ingest.metrics()).rejects.toMatchObject({ code: 'metrics_disabled' })
    } finally {
      await closeServer(server)
      await ingest.close()
    }
  })
})

describe('metrics options', () => {
  it("registers in the host's registry, scraped with the host's own metrics, under a prefix", async () => {
    const registry = new Registry()
    const hostCounter = new Counter({ name: 'host_orders_total', help: 'orders', registers: [registry] })
    hostCounter.inc(7)
    const host = await startHost(h3Host, { adminToken: ADMIN, metrics: { registry, prefix: 'shop_events_', lagBuckets: [1, 10] } })
    try {
      expect((await postEvents(host.url, [makeEvent({ id: 'reg-1', occurredAt: new Date(Date.now() - 5000).toISOString() })])).status).toBe(200)
      const fromHost = parsePrometheus(await registry.metrics())
      expect(fromHost.value('host_orders_total')).toBe(7)
      expect(fromHost.value('shop_events_events_accepted_total')).toBe(1)
      expect(fromHost.value('shop_events_ingest_lag_seconds_bucket', { le: '1' })).toBe(0)
      expect(fromHost.value('shop_events_ingest_lag_seconds_bucket', { le: '10' })).toBe(1)
      expect(fromHost.samples.has('shop_events_ingest_lag_seconds_bucket{le="60"}')).toBe(false)
      // The admin route serves the whole registry, the host's metrics included.
      expect((await scrape(host.url)).value('host_orders_total')).toBe(7)
    } finally {
      await host.close()
    }
  })

  it('refuses a second core in one registry under the same prefix, naming metrics.prefix; another prefix is fine', async () => {
    const registry = new Registry()
    const first = createEventIngest({ env: {}, metrics: { registry } })
    await first.ready()
    try {
      expect(() => createEventIngest({ env: {}, metrics: { registry } })).toThrow(/metrics\.registry already holds .* metrics\.prefix/)
      const second = createEventIngest({ env: {}, metrics: { registry, prefix: 'second_' } })
      await second.ingest([makeEvent({ id: 'second-1' })])
      const scraped = parsePrometheus(await registry.metrics())
      expect(scraped.value('second_events_accepted_total')).toBe(1)
      expect(scraped.value('event_ingest_events_accepted_total')).toBe(0)
      await second.close()
      // A closed core takes its metrics out of the host's registry: a new one may register again.
      expect(parsePrometheus(await registry.metrics()).samples.has('second_events_accepted_total')).toBe(false)
      const again = createEventIngest({ env: {}, metrics: { registry, prefix: 'second_' } })
      await again.ready()
      await again.close()
    } finally {
      await first.close()
    }
  })

  it('is read from EVENT_METRICS when the option is unset; the option wins', async () => {
    const on = createEventIngest({ env: { EVENT_METRICS: 'true' } })
    const off = createEventIngest({ env: { EVENT_METRICS: '1' }, metrics: false })
    try {
      expect(await on.metrics()).toContain('event_ingest_events_accepted_total 0')
      await expect(off.metrics()).rejects.toMatchObject({ code: 'metrics_disabled' })
    } finally {
      await on.close()
      await off.close()
    }
  })

  it.each([
    [{ metrics: 'yes' }, /metrics must be true, false or an object/],
    [{ metrics: { prefix: 'bad-prefix' } }, /metrics\.prefix must match/],
    [{ metrics: { prefix: '1x_' } }, /metrics\.prefix must match/],
    [{ metrics: { lagBuckets: [] } }, /metrics\.lagBuckets must be a non-empty array/],
    [{ metrics: { lagBuckets: [5, 1] } }, /metrics\.lagBuckets must be a non-empty array of increasing/],
    [{ metrics: { lagBuckets: [0, 1] } }, /metrics\.lagBuckets/],
    [{ metrics: { deliveryBuckets: [1, 1] } }, /metrics\.deliveryBuckets must be a non-empty array of increasing/],
    [{ metrics: { registry: {} } }, /metrics\.registry must be a prom-client Registry/],
    [{ metrics: { bucket: [1] } }, /metrics\.bucket is not an option/],
    [{ env: { EVENT_METRICS: 'maybe' } }, /EVENT_METRICS: must be 1, true, 0 or false, got "maybe"/],
  ])('refuses %j with an error naming the option', (options, message) => {
    expect(() => createEventIngest({ env: {}, ...(options as object) })).toThrow(message)
  })

  it('accepts lagBuckets of one bound and an empty prefix', async () => {
    const ingest = createEventIngest({ env: {}, metrics: { prefix: '', lagBuckets: [1] } })
    try {
      const text = await ingest.metrics()
      expect(parsePrometheus(text).value('events_accepted_total')).toBe(0)
      expect(parsePrometheus(text).value('ingest_lag_seconds_bucket', { le: '1' })).toBe(0)
    } finally {
      await ingest.close()
    }
  })
})

describe('metrics of storage failures and clock skew', () => {
  it('counts the events of a request answered 503 as storage failures', async () => {
    let failing = true
    const memory = memoryDriver()
    const flaky = defineDriver(() => ({
      ...memory,
      name: 'flaky',
      setItem(key: string, value: string) {
        if (failing && key.startsWith('events:b:')) throw new Error('disk on fire')
        return memory.setItem!(key, value, {})
      },
    }))
    const host = await startHost(h3Host, { storage: createStorage({ driver: flaky() }), adminToken: ADMIN, metrics: true })
    try {
      expect((await postEvents(host.url, [makeEvent({ id: 'sf-1' }), makeEvent({ id: 'sf-2' })])).status).toBe(503)
      failing = false
      expect((await postEvents(host.url, [makeEvent({ id: 'sf-1' }), makeEvent({ id: 'sf-2' })])).status).toBe(200)
      const scraped = await scrape(host.url)
      expect(scraped.value('event_ingest_storage_failures_total')).toBe(2)
      expect(scraped.value('event_ingest_events_accepted_total')).toBe(2)
    } finally {
      await host.close()
    }
  })

  it('observes a corrected clock skew in seconds, and lag from the corrected time', async () => {
    const host = await startHost(h3Host, { adminToken: ADMIN, metrics: true })
    try {
      // The producer's clock is two hours behind; the event happened 5 s before it was sent.
      const sentAt = new Date(Date.now() - 2 * HOUR).toISOString()
      const occurredAt = new Date(Date.parse(sentAt) - 5000).toISOString()
      expect((await postEvents(host.url, [makeEvent({ id: 'skew-1', occurredAt })], { 'x-event-sent-at': sentAt })).status).toBe(200)
      const scraped = await scrape(host.url)
      expect(scraped.value('event_ingest_clock_skew_seconds_count')).toBe(1)
      expect(scraped.value('event_ingest_clock_skew_seconds_bucket', { le: '3600' })).toBe(0)
      expect(scraped.value('event_ingest_clock_skew_seconds_bucket', { le: '21600' })).toBe(1)
      expect(scraped.value('event_ingest_ingest_lag_seconds_bucket', { le: '1' })).toBe(0)
      expect(scraped.value('event_ingest_ingest_lag_seconds_bucket', { le: '15' })).toBe(1)
    } finally {
      await host.close()
    }
  })
})

describe('metrics of refusals', () => {
  it('counts a request over a rate limit under rate_limited, and a wrong token under token_invalid', async () => {
    const host = await startHost(h3Host, { adminToken: ADMIN, token: 'ingest-token', metrics: true, rateLimits: { perToken: { points: 1, durationSeconds: 60 } } })
    try {
      const token = { 'x-event-token': 'ingest-token' }
      expect((await postEvents(host.url, [makeEvent({ id: 'rl-1' })], token)).status).toBe(200)
      expect((await postEvents(host.url, [makeEvent({ id: 'rl-2' })], token)).status).toBe(429)
      expect((await postEvents(host.url, [makeEvent({ id: 'rl-3' })], { 'x-event-token': 'wrong' })).status).toBe(401)
      const scraped = await scrape(host.url)
      expect(scraped.value('event_ingest_requests_refused_total', { code: 'rate_limited' })).toBe(1)
      expect(scraped.value('event_ingest_requests_refused_total', { code: 'token_invalid' })).toBe(1)
      expect(scraped.value('event_ingest_events_accepted_total')).toBe(1)
    } finally {
      await host.close()
    }
  })
})

describe('metrics of lag', () => {
  it('leaves out of lag the events the stats leave out: too far in the future or the past', async () => {
    const host = await startHost(h3Host, { adminToken: ADMIN, metrics: true, stats: { futureToleranceMs: 60_000, pastToleranceMs: HOUR } })
    try {
      const at = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString()
      const events = [
        makeEvent({ id: 'lag-future-far', occurredAt: at(120_000) }),
        makeEvent({ id: 'lag-future-near', occurredAt: at(30_000) }),
        makeEvent({ id: 'lag-past-far', occurredAt: at(-2 * HOUR) }),
        makeEvent({ id: 'lag-past-near', occurredAt: at(-HOUR + 60_000) }),
      ]
      expect((await postEvents(host.url, events)).body).toMatchObject({ accepted: 4 })
      const scraped = await scrape(host.url)
      expect(scraped.value('event_ingest_events_accepted_total')).toBe(4)
      expect(scraped.value('event_ingest_ingest_lag_seconds_count')).toBe(2)
      // The near-future event counts as a lag of 0, the near-past one as about 59 minutes.
      expect(scraped.value('event_ingest_ingest_lag_seconds_bucket', { le: '0.1' })).toBe(1)
      expect(scraped.value('event_ingest_ingest_lag_seconds_bucket', { le: '3600' })).toBe(2)
      expect(scraped.value('event_ingest_ingest_lag_seconds_sum')).toBeGreaterThan(3500)
    } finally {
      await host.close()
    }
  })
})

describe('metrics of forwarding', () => {
  it('counts failed then successful attempts and shows the backlog while the sink fails', async () => {
    const sink = await startSink(() => ({ status: 503 }))
    const host = await startHost(h3Host, { adminToken: ADMIN, metrics: true, sink: { url: sink.url, minBackoffMs: 50, maxBackoffMs: 100, heartbeatMs: 200 } })
    try {
      expect((await postEvents(host.url, [makeEvent({ id: 'fw-1' }), makeEvent({ id: 'fw-2' })])).status).toBe(200)
      await waitFor(() => sink.requests.length >= 2, 10_000, 'two failed attempts')
      const failing = await scrape(host.url)
      expect(failing.value('event_ingest_forward_backlog_batches')).toBe(1)
      expect(failing.value('event_ingest_forward_backlog_events')).toBe(2)
      expect(failing.value('event_ingest_forward_oldest_pending_seconds')).toBeGreaterThan(0)
      expect(failing.value('event_ingest_forward_dead_letters')).toBe(0)
      expect(failing.value('event_ingest_forward_failures_total', { kind: '5xx' })).toBeGreaterThanOrEqual(2)
      sink.set(() => ({ status: 200 }))
      await waitFor(() => sink.stored.length === 1, 10_000, 'the delivery')
      await waitFor(async () => (await scrape(host.url)).value('event_ingest_forward_backlog_batches') === 0, 5000, 'an empty backlog')
      const done = await scrape(host.url)
      const failed = sink.requests.length - 1
      expect(done.value('event_ingest_forward_failures_total', { kind: '5xx' })).toBe(failed)
      expect(done.value('event_ingest_forward_attempts_total', { outcome: '5xx' })).toBe(failed)
      expect(done.value('event_ingest_forward_attempts_total', { outcome: 'success' })).toBe(1)
      expect(done.value('event_ingest_forward_events_delivered_total')).toBe(2)
      expect(done.value('event_ingest_forward_oldest_pending_seconds')).toBe(0)
    } finally {
      await host.close()
      await sink.close()
    }
  })

  it('times every attempt, and a delivered batch from its receipt to the sink taking it', async () => {
    const sink = await startSink((_request, attempt) => ({ status: attempt <= 2 ? 503 : 200 }))
    const host = await startHost(h3Host, { adminToken: ADMIN, metrics: { deliveryBuckets: [0.005, 0.1, 60] }, sink: { url: sink.url, minBackoffMs: 100, maxBackoffMs: 150 } })
    try {
      const sent = Date.now()
      expect((await postEvents(host.url, [makeEvent({ id: 'lat-1' })])).status).toBe(200)
      await waitFor(() => sink.stored.length === 1, 10_000, 'the delivery')
      const elapsed = (Date.now() - sent) / 1000
      await waitFor(async () => (await scrape(host.url)).value('event_ingest_forward_delivery_latency_seconds_count') === 1, 5000, 'the latency observed')
      const done = await scrape(host.url)
      expect(done.value('event_ingest_forward_attempt_duration_seconds_count')).toBe(sink.requests.length)
      expect(done.value('event_ingest_forward_attempt_duration_seconds_bucket', { le: '60' })).toBe(sink.requests.length)
      // The batch was received before the first attempt reached the sink, and taken with the third.
      const latency = done.value('event_ingest_forward_delivery_latency_seconds_sum')!
      expect(sink.requests).toHaveLength(3)
      expect(latency).toBeGreaterThanOrEqual((sink.requests[2]!.at - sink.requests[0]!.at - 2) / 1000)
      expect(latency).toBeLessThanOrEqual(elapsed)
      const within = (le: string) => done.value('event_ingest_forward_delivery_latency_seconds_bucket', { le })
      expect(within('0.005')).toBe(latency <= 0.005 ? 1 : 0)
      expect(within('60')).toBe(1)
      expect(within('+Inf')).toBe(1)
    } finally {
      await host.close()
      await sink.close()
    }
  })

  it('shows a batch the sink refuses for good as a dead letter', async () => {
    const sink = await startSink(() => ({ status: 400, body: '{"error":"no"}' }))
    const host = await startHost(h3Host, { adminToken: ADMIN, metrics: true, sink: { url: sink.url, minBackoffMs: 20, maxBackoffMs: 50 } })
    try {
      expect((await postEvents(host.url, [makeEvent({ id: 'dl-1' })])).status).toBe(200)
      await waitFor(async () => (await scrape(host.url)).value('event_ingest_forward_dead_letters') === 1, 10_000, 'a dead letter')
      const scraped = await scrape(host.url)
      expect(scraped.value('event_ingest_forward_failures_total', { kind: 'rejected' })).toBe(1)
      expect(scraped.value('event_ingest_forward_backlog_batches')).toBe(0)
    } finally {
      await host.close()
      await sink.close()
    }
  })
})

describe('metrics on Redis storage', () => {
  const prefix = uniquePrefix('metrics')
  let ingest: EventIngest<any> | undefined
  afterAll(async () => {
    await ingest?.close()
    await deletePrefix(prefix)
  })

  it('counts accepted and duplicate events stored on Redis', async () => {
    await requireRedis()
    const host = await startHost(h3Host, { adminToken: ADMIN, metrics: true, storage: { driver: 'redis', url: redisUrl, base: prefix } })
    ingest = host.ingest
    try {
      expect((await postEvents(host.url, [makeEvent({ id: 'r-1' }), makeEvent({ id: 'r-2' })])).body).toMatchObject({ accepted: 2 })
      expect((await postEvents(host.url, [makeEvent({ id: 'r-2' }), makeEvent({ id: 'r-3' })])).body).toMatchObject({ accepted: 1, duplicates: 1 })
      const scraped = await scrape(host.url)
      expect(scraped.value('event_ingest_events_accepted_total')).toBe(3)
      expect(scraped.value('event_ingest_events_duplicate_total')).toBe(1)
      expect(scraped.value('event_ingest_ingest_lag_seconds_count')).toBe(3)
    } finally {
      await host.close()
      ingest = undefined
    }
  })
})
