import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeEvent } from '../../helpers/fixtures'
import { postEvents, rawRequest } from '../../helpers/http'
import { parsePrometheus } from '../../helpers/prometheus'
import { startHost, type HostFactory, type RunningHost } from '../../helpers/servers'

const ADMIN = 'admin-secret-token'
const admin = { authorization: `Bearer ${ADMIN}` }

/** `GET /admin/metrics` over real HTTP on one host framework: scraped and parsed, values exact. */
export function defineMetricsSuite(factory: HostFactory, label: string) {
  describe(`${label}: GET /admin/metrics`, () => {
    let host: RunningHost
    beforeAll(async () => {
      host = await startHost(factory, { adminToken: ADMIN, metrics: true, limits: { maxEvents: 3 } }, '/api')
    })
    afterAll(() => host.close())

    it('counts accepted, duplicate, rejected events and refused requests, as scraped', async () => {
      const old = new Date(Date.now() - 30_000).toISOString()
      expect((await postEvents(host.url, [makeEvent({ id: 'm-1', occurredAt: old }), makeEvent({ id: 'm-2', occurredAt: old })])).status).toBe(200)
      const mixed = await postEvents(host.url, [makeEvent({ id: 'm-3' }), makeEvent({ id: 'm-4', name: 'NoSuchEvent' })])
      expect(mixed.body).toMatchObject({ accepted: 1, duplicates: 0 })
      expect((await postEvents(host.url, [makeEvent({ id: 'm-1', occurredAt: old })])).body).toMatchObject({ accepted: 0, duplicates: 1 })
      expect((await postEvents(host.url, '[{"id":')).status).toBe(400)
      const over = [1, 2, 3, 4].map((n) => makeEvent({ id: `m-over-${n}` }))
      expect((await postEvents(host.url, over)).status).toBe(413)

      const res = await rawRequest(`${host.url}/admin/metrics`, { method: 'GET', headers: admin })
      expect(res.status).toBe(200)
      // Express 4 reorders the parameters: the type and the format version are what a scraper reads.
      expect(res.headers['content-type']).toMatch(/^text\/plain;/)
      expect(res.headers['content-type']).toContain('version=0.0.4')
      const scrape = parsePrometheus(res.text)
      expect(scrape.types.get('event_ingest_events_accepted_total')).toBe('counter')
      expect(scrape.types.get('event_ingest_ingest_lag_seconds')).toBe('histogram')
      expect(scrape.value('event_ingest_events_accepted_total')).toBe(3)
      expect(scrape.value('event_ingest_events_duplicate_total')).toBe(1)
      expect(scrape.value('event_ingest_events_rejected_total')).toBe(1)
      expect(scrape.value('event_ingest_requests_refused_total', { code: 'invalid_json' })).toBe(1)
      expect(scrape.value('event_ingest_requests_refused_total', { code: 'too_many_events' })).toBe(1)
      expect(scrape.value('event_ingest_storage_failures_total')).toBe(0)
      // Lag: two events 30 s old, one fresh.
      expect(scrape.value('event_ingest_ingest_lag_seconds_count')).toBe(3)
      expect(scrape.value('event_ingest_ingest_lag_seconds_bucket', { le: '15' })).toBe(1)
      expect(scrape.value('event_ingest_ingest_lag_seconds_bucket', { le: '60' })).toBe(3)
      const sum = scrape.value('event_ingest_ingest_lag_seconds_sum')
      expect(sum).toBeGreaterThanOrEqual(60)
      expect(sum).toBeLessThan(75)
      // Without a sink there are no forwarding gauges.
      expect(scrape.types.has('event_ingest_forward_backlog_batches')).toBe(false)
    })

    it('refuses a scrape without the admin token (401) or with a wrong one (401)', async () => {
      const missing = await rawRequest(`${host.url}/admin/metrics`, { method: 'GET' })
      expect(missing.status).toBe(401)
      expect(missing.json.code).toBe('admin_token_missing')
      expect(missing.headers['www-authenticate']).toMatch(/^Bearer/)
      const wrong = await rawRequest(`${host.url}/admin/metrics`, { method: 'GET', headers: { authorization: 'Bearer nope' } })
      expect(wrong.status).toBe(401)
      expect(wrong.json.code).toBe('admin_token_invalid')
      expect(wrong.text).not.toContain('event_ingest_')
    })

    it('answers 405 to a POST, naming GET', async () => {
      const res = await rawRequest(`${host.url}/admin/metrics`, { method: 'POST', headers: admin, body: '' })
      expect(res.status).toBe(405)
      expect(res.headers.allow).toBe('GET, HEAD')
    })
  })

  describe(`${label}: GET /admin/metrics, off or without admin access`, () => {
    it('answers 404 metrics_disabled when metrics are off', async () => {
      const host = await startHost(factory, { adminToken: ADMIN }, '/api')
      try {
        const res = await rawRequest(`${host.url}/admin/metrics`, { method: 'GET', headers: admin })
        expect(res.status).toBe(404)
        expect(res.json.code).toBe('metrics_disabled')
        expect(res.json.message).toMatch(/metrics/)
      } finally {
        await host.close()
      }
    })

    it('answers 403 admin_disabled when no admin access is configured', async () => {
      const host = await startHost(factory, { metrics: true }, '/api')
      try {
        const res = await rawRequest(`${host.url}/admin/metrics`, { method: 'GET', headers: admin })
        expect(res.status).toBe(403)
        expect(res.json.code).toBe('admin_disabled')
      } finally {
        await host.close()
      }
    })
  })
}
