import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeEvent } from '../helpers/fixtures'
import { getJson, rawRequest } from '../helpers/http'
import { startOwnRedis, type OwnRedis } from '../helpers/redis'
import { waitFor } from '../helpers/sink'
import { h3Host, startHost, type RunningHost } from '../helpers/servers'

/**
 * Rate limits while Redis fails, over real HTTP: a redis-server of this test's own (never the
 * shared one) is killed and started again. Checks Redis cannot answer are counted in the
 * instance's memory instead, with the same limit: neither every producer refused nor the limit
 * lifted; the outage is reported once and every such check counted in stats.
 */

const ADMIN = 'rate-limit-faults-admin'

describe('rate limits when Redis fails', () => {
  let redis: OwnRedis
  let host: RunningHost
  const reports: unknown[] = []
  beforeAll(async () => {
    redis = await startOwnRedis()
    host = await startHost(h3Host, {
      adminToken: ADMIN,
      storage: { driver: 'redis', url: redis.url, base: 'rl-faults', commandTimeout: 500 },
      storageTimeoutMs: 1000,
      stats: { flushIntervalMs: 100 },
      onError: (error) => reports.push(error),
      rateLimits: { perAddress: { points: 2, durationSeconds: 60 }, trustProxy: 1 },
    })
  })
  afterAll(async () => {
    await host?.close()
    await redis?.dispose()
  })

  const post = (address: string) => rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json', 'x-forwarded-for': address }, body: JSON.stringify([makeEvent()]) })

  it('counts in memory while Redis is down, with the same limit, reports the outage once and counts each such check', async () => {
    expect((await post('192.0.2.1')).status).toBe(200)
    expect((await post('192.0.2.1')).status).toBe(200)
    expect((await post('192.0.2.1')).status).toBe(429)

    await redis.stop()
    // The limit still holds: two checks allowed in memory (their ingest fails, storage is down), the third refused.
    const down = [await post('192.0.2.2'), await post('192.0.2.2'), await post('192.0.2.2')]
    expect(down.map((res) => res.status)).toEqual([503, 503, 429])
    expect(down[2]!.json).toMatchObject({ code: 'rate_limited', limit: 'perAddress' })
    const said = reports.filter((error) => /rate limits: the shared store failed/.test(String(error)))
    expect(said).toHaveLength(1)

    await redis.start()
    await waitFor(async () => (await post(`192.0.2.${Math.floor(Math.random() * 200) + 10}`)).status === 200, 15_000, 'ingest to recover')
    // Back on Redis (which lost its counts with the restart): the shared limit counts again.
    expect((await post('192.0.2.3')).status).toBe(200)
    expect((await post('192.0.2.3')).status).toBe(200)
    expect((await post('192.0.2.3')).status).toBe(429)
    await waitFor(async () => (await getJson(`${host.url}/admin/events/stats`, { authorization: `Bearer ${ADMIN}` })).body?.rateLimits?.refused === 3, 10_000, 'the refusals in stats')
    const stats = (await getJson(`${host.url}/admin/events/stats`, { authorization: `Bearer ${ADMIN}` })).body
    expect(stats.rateLimits).toMatchObject({ refused: 3, byLimit: { perAddress: 3 } })
    // The three checks above, and any made while waiting for Redis to be ready again.
    expect(stats.rateLimits.storeErrors).toBeGreaterThanOrEqual(3)
  })
})

describe('rate limits when Redis stalls', () => {
  let redis: OwnRedis
  let host: RunningHost
  beforeAll(async () => {
    redis = await startOwnRedis()
    // ioredis would wait 10 s for an answer: storageTimeoutMs is what bounds a check.
    host = await startHost(h3Host, {
      storage: { driver: 'redis', url: redis.url, base: 'rl-stall', commandTimeout: 10_000 },
      storageTimeoutMs: 300,
      onError: () => {},
      rateLimits: { perAddress: { points: 1, durationSeconds: 60 } },
    })
  })
  afterAll(async () => {
    await host?.close()
    await redis?.dispose()
  })

  it('counts a check Redis does not answer within storageTimeoutMs in memory, and still refuses past the limit', async () => {
    redis.pause()
    try {
      const post = () => rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify([makeEvent()]) })
      // Allowed in memory (the stalled storage then answers 503), then refused in memory.
      expect((await post()).status).toBe(503)
      const refused = await post()
      expect(refused.status).toBe(429)
      expect(refused.json).toMatchObject({ code: 'rate_limited', limit: 'perAddress', points: 1 })
    } finally {
      redis.resume()
    }
  })
})
