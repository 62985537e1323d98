import Redis from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest, type EventIngest, type SinkOptions } from 'event-ingest'
import { makeEvent } from '../helpers/fixtures'
import { postEvents } from '../helpers/http'
import { deletePrefix, redisUrl, requireRedis, startOwnRedis, uniquePrefix } from '../helpers/redis'
import { h3Host, startHost } from '../helpers/servers'
import { waitFor } from '../helpers/sink'
import { startTcpProxy } from '../helpers/tcp-proxy'

// A Redis Streams sink against real Redis servers: the shared one (own stream names, removed
// afterwards) and private ones for Redis going away and coming back.

const prefix = uniquePrefix('sink-stream')
const open: { close(): Promise<void> }[] = []
let redis: Redis

beforeAll(async () => {
  await requireRedis()
  redis = new Redis(redisUrl)
})
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})
afterAll(async () => {
  await deletePrefix(prefix)
  redis?.disconnect()
})

const fast = { minBackoffMs: 20, maxBackoffMs: 200, heartbeatMs: 200, timeoutMs: 1000 } satisfies Partial<SinkOptions>

async function core(sink: SinkOptions): Promise<EventIngest<any>> {
  const ingest = createEventIngest({ env: {}, sink: { ...fast, ...sink } })
  await ingest.ready()
  open.push(ingest)
  return ingest
}

/** The stream's entries: each one batch, with its key and events. */
async function entries(client: Redis, stream: string) {
  const found = await client.xrange(stream, '-', '+')
  return found.map(([id, fields]) => {
    const record: Record<string, string> = {}
    for (let i = 0; i < fields.length; i += 2) record[fields[i]!] = fields[i + 1]!
    return { id, key: record.key!, events: Number(record.events), body: JSON.parse(record.body!) as { id: string }[] }
  })
}

describe('Redis Streams sink', () => {
  it('appends each batch received over HTTP as one stream entry with its idempotency key', async () => {
    const stream = `${prefix}:http`
    const host = await startHost(h3Host, { env: {}, sink: { ...fast, type: 'redis-stream', url: redisUrl, stream } })
    open.push(host)
    const first = await postEvents(host.url, [makeEvent({ id: 'rs-1' }), makeEvent({ id: 'rs-2' })])
    expect(first.status).toBe(200)
    await waitFor(async () => (await host.ingest.stats()).forwarded === 2, 5000, 'delivery')
    const [entry, ...more] = await entries(redis, stream)
    expect(more).toEqual([])
    expect(entry!.body.map((e) => e.id)).toEqual(['rs-1', 'rs-2'])
    expect(entry!.events).toBe(2)
    expect(entry!.key).toMatch(/^[0-9a-f]{32}$/)
    expect(await redis.pttl(`${stream}:delivered:${entry!.key}`)).toBeGreaterThan(86_000_000)
    expect((await host.ingest.stats()).forwarding!.sink).toBe(`${redisUrl}#${stream}`)
  })

  it('takes the stream from the URL fragment, as EVENT_SINK_URL gives it', async () => {
    const stream = `${prefix}:env`
    const ingest = createEventIngest({ env: { EVENT_SINK_URL: `${redisUrl}#${encodeURIComponent(stream)}` } })
    open.push(ingest)
    await ingest.ingest([makeEvent({ id: 'rs-env' })])
    await waitFor(async () => (await redis.xlen(stream)) === 1, 5000, 'the entry')
    expect((await entries(redis, stream))[0]!.body[0]!.id).toBe('rs-env')
  })

  it('does not append a batch again when the answer to its append was lost and it is redelivered', async () => {
    const stream = `${prefix}:lost-answer`
    const proxy = await startTcpProxy(Number(new URL(redisUrl).port || 6379))
    open.push(proxy)
    // The script's reply is cut, not the NOSCRIPT answer that asks for the script's text.
    proxy.cutReplyTo('rs-lost-1', (reply) => !reply.toString().startsWith('-NOSCRIPT'))
    const ingest = await core({ type: 'redis-stream', url: `redis://127.0.0.1:${proxy.port}`, stream })
    await ingest.ingest([makeEvent({ id: 'rs-lost-1' })])
    await waitFor(async () => (await ingest.stats()).forwarded === 1, 10_000, 'delivery after the lost answer')
    expect(proxy.cuts).toBe(1)
    const stats = await ingest.stats()
    expect(stats.failures.forward).toBeGreaterThanOrEqual(1)
    const found = await entries(redis, stream)
    expect(found.map((e) => e.body.map((event) => event.id))).toEqual([['rs-lost-1']])
  })

  it('trims the stream to about maxLen entries', async () => {
    const stream = `${prefix}:trim`
    const ingest = await core({ type: 'redis-stream', url: redisUrl, stream, maxLen: 10, maxBatchEvents: 1 })
    for (let i = 0; i < 300; i++) await ingest.ingest([makeEvent({ id: `rs-trim-${i}` })])
    await waitFor(async () => (await ingest.stats()).forwarded === 300, 20_000, 'every batch')
    const length = await redis.xlen(stream)
    // `~` trims whole macro nodes (100 entries by default): far below 300, never below 10.
    expect(length).toBeGreaterThanOrEqual(10)
    expect(length).toBeLessThan(300)
    expect((await entries(redis, stream)).at(-1)!.body[0]!.id).toBe('rs-trim-299')
  })

  it('trims entries older than maxAgeMs, and with maxLen 0 and maxAgeMs 0 trims nothing', async () => {
    const aged = `${prefix}:aged`
    const kept = `${prefix}:kept`
    const byAge = await core({ type: 'redis-stream', url: redisUrl, stream: aged, maxLen: 0, maxAgeMs: 1, maxBatchEvents: 1 })
    const untrimmed = await core({ type: 'redis-stream', url: redisUrl, stream: kept, maxLen: 0, maxAgeMs: 0, maxBatchEvents: 1 })
    for (let i = 0; i < 300; i++) {
      await byAge.ingest([makeEvent({ id: `rs-age-${i}` })])
      await untrimmed.ingest([makeEvent({ id: `rs-keep-${i}` })])
    }
    await waitFor(async () => (await byAge.stats()).forwarded === 300 && (await untrimmed.stats()).forwarded === 300, 20_000, 'every batch')
    expect(await redis.xlen(aged)).toBeLessThan(300)
    expect((await entries(redis, aged)).at(-1)!.body[0]!.id).toBe('rs-age-299')
    expect(await redis.xlen(kept)).toBe(300)
  })

  it('keeps every batch in the outbox while Redis is down and appends each once when it is back', async () => {
    const own = await startOwnRedis()
    open.push({ close: () => own.dispose() })
    const stream = 'events'
    const ingest = await core({ type: 'redis-stream', url: own.url, stream })
    await ingest.ingest([makeEvent({ id: 'rs-down-0' })])
    const client = new Redis(own.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 })
    client.on('error', () => {})
    open.push({ close: async () => client.disconnect() })
    await waitFor(async () => (await ingest.stats()).forwarded === 1, 5000, 'the first delivery')
    await own.stop()
    const ids: string[] = []
    for (let i = 1; i <= 5; i++) {
      ids.push(`rs-down-${i}`)
      expect((await ingest.ingest([makeEvent({ id: `rs-down-${i}` })])).accepted).toBe(1)
    }
    await waitFor(async () => (await ingest.stats()).failures.forward >= 2, 5000, 'failed attempts while down')
    const down = await ingest.stats()
    expect(down.forwarding!.backlog).toBe(5)
    expect(down.forwarding!.backlogEvents).toBe(5)
    expect(down.forwarding!.oldestPendingMs).toBeGreaterThanOrEqual(0)
    await own.start()
    await waitFor(async () => (await ingest.stats()).forwarding!.backlog === 0, 15_000, 'the backlog delivered')
    // The stream started over with the server (no persistence): the five batches, each once, in order.
    const found = await entries(client, stream)
    expect(found.flatMap((e) => e.body.map((event) => event.id))).toEqual(ids)
    expect((await ingest.stats()).forwarded).toBe(6)
  })

  it('refuses bad options, naming the option', () => {
    expect(() => createEventIngest({ env: {}, sink: { type: 'redis-stream', url: redisUrl } })).toThrow(/sink\.stream is required/)
    expect(() => createEventIngest({ env: {}, sink: { type: 'redis-stream', url: 'http://x', stream: 's' } })).toThrow(/sink\.url of a redis-stream sink must be a redis:\/\/ URL/)
    expect(() => createEventIngest({ env: {}, sink: { url: redisUrl, stream: 's', maxLen: -1 } })).toThrow(/sink\.maxLen must be a non-negative integer, got -1/)
    expect(() => createEventIngest({ env: {}, sink: { url: redisUrl, stream: 's', maxAgeMs: 1.5 } })).toThrow(/sink\.maxAgeMs must be a non-negative integer/)
    expect(() => createEventIngest({ env: {}, sink: { url: redisUrl, stream: 's', idempotencyWindowMs: 0 } })).toThrow(/sink\.idempotencyWindowMs must be a positive integer, got 0/)
    expect(() => createEventIngest({ env: {}, sink: { url: redisUrl, stream: '' } })).toThrow(/sink\.stream must not be empty/)
    expect(() => createEventIngest({ env: {}, sink: { type: 'kafka' as 'http', url: redisUrl } })).toThrow(/sink\.type must be one of 'http', 'redis-stream', 'nats', 'deliver', got "kafka"/)
    // The boundary: 0 turns the cap off, and is allowed.
    expect(() => createEventIngest({ env: {}, sink: { url: redisUrl, stream: 's', maxLen: 0, maxAgeMs: 0 } }).close()).not.toThrow()
  })
})
