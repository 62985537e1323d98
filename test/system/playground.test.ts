import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventModel, pickExamples, readFixtures, renderCatalog } from 'event-ingest'
import { makeEvent } from '../helpers/fixtures'
import { projectRoot } from '../helpers/process'
import { startPlayground, type RunningPlayground } from '../helpers/playground-process'

const fixturesDir = `${projectRoot}test/fixtures/v1`

const json = { 'content-type': 'application/json' }

describe.each(['h3', 'express', 'koa', 'fastify'])('playground with FRAMEWORK=%s and no EVENT_* variables', (framework) => {
  let playground: RunningPlayground

  beforeAll(async () => {
    playground = await startPlayground({ FRAMEWORK: framework })
  })
  afterAll(async () => {
    await playground?.stop()
  })

  it('prints its URL, a generated dev admin token, the routes and the sink hint', () => {
    const output = playground.output()
    expect(output).toContain(`event-ingest playground (${framework}) listening on ${playground.url}`)
    expect(playground.devAdminToken).toMatch(/^dev-[\w-]{20,}$/)
    for (const route of ['/events/ingest', '/events/schema', '/admin/events/stats', '/admin/events?limit=20', '/sink', '/catalog']) expect(output).toContain(playground.url + route)
    expect(output).toContain(`EVENT_SINK_URL=${playground.url}/sink`)
    expect(output).toContain('memory:')
  })

  it('accepts events on POST /events/ingest (open: no EVENT_INGEST_TOKEN)', async () => {
    const response = await fetch(`${playground.url}/events/ingest`, { method: 'POST', headers: json, body: JSON.stringify([makeEvent(), makeEvent({ occurredAt: 'soon' })]) })
    expect(response.status).toBe(200)
    const body = await response.json()
    expect(body).toMatchObject({ accepted: 1, duplicates: 0, rejected: [{ index: 1, errors: [{ path: 'occurredAt' }] }] })
  })

  it('serves GET /events/schema', async () => {
    const response = await fetch(`${playground.url}/events/schema`)
    expect(response.status).toBe(200)
    expect((await response.json()).schemaVersion).toBe(1)
  })

  it('serves GET /admin/events/stats with the printed dev admin token, and 401 without it', async () => {
    const authorised = await fetch(`${playground.url}/admin/events/stats`, { headers: { authorization: `Bearer ${playground.devAdminToken}` } })
    expect(authorised.status).toBe(200)
    const stats = await authorised.json()
    expect(stats.totals).toMatchObject({ accepted: 1, rejected: 1 })
    expect(stats.series).toHaveLength(60)

    const anonymous = await fetch(`${playground.url}/admin/events/stats`)
    expect(anonymous.status).toBe(401)
    const wrong = await fetch(`${playground.url}/admin/events/stats`, { headers: { authorization: 'Bearer dev-not-the-token' } })
    expect(wrong.status).toBe(401)
  })

  it('lists the stored event on GET /admin/events', async () => {
    const response = await fetch(`${playground.url}/admin/events?limit=20`, { headers: { authorization: `Bearer ${playground.devAdminToken}` } })
    expect(response.status).toBe(200)
    expect((await response.json()).events).toHaveLength(1)
  })

  it('serves the self-contained dashboard at / with the dev admin token injected', async () => {
    const response = await fetch(`${playground.url}/`)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/html/)
    expect(response.headers.get('cache-control')).toBe('no-store')
    const html = await response.text()
    expect(html).toContain('Send sample events')
    expect(html).toContain(JSON.stringify(playground.devAdminToken))
    expect(html).not.toContain('__PLAYGROUND_CONFIG__')
    // No external scripts, styles or fonts.
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+stylesheet|@import|url\(\s*['"]?https?:/i)
  })

  it('serves the catalog of the canonical model at /catalog, as event-ingest docs writes it', async () => {
    const response = await fetch(`${playground.url}/catalog`)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/markdown; charset=utf-8')
    const text = await response.text()
    const model = createEventModel()
    // The canonical model with the playground's redaction rules, as it publishes them.
    const published = await (await fetch(`${playground.url}/events/schema`)).json()
    expect(text).toBe(renderCatalog(published, { examples: pickExamples(await readFixtures(fixturesDir), model) }))
    expect(text).toContain('Redacted at ingest, before storage and forwarding: `items[].giftMessage` (drop), `customer.phone` (mask), `customer.email` (hash).')
    for (const name of model.names) expect(text).toContain(`\n## ${name}\n`)
    expect(text).toContain('Example (`OrderCreated.json`):')
  })

  it('redacts the personal data of its sample events before storage, and counts it', async () => {
    expect(playground.output()).toMatch(/redaction {5}OrderCreated items\[\]\.giftMessage \(drop\), OrderCreated customer\.phone \(mask\), OrderCreated customer\.email \(hash\), EmailSent to \(hash\); HMAC key generated for this run/)
    const order = makeEvent({ id: `pii-${framework}`, name: 'OrderCreated', source: 'api', payload: { orderId: 'o1', customer: { email: 'ann@example.com', phone: '+33 6 11 22 33 44' }, items: [{ sku: 's', giftMessage: 'Happy birthday!' }] } })
    const posted = await fetch(`${playground.url}/events/ingest`, { method: 'POST', headers: json, body: JSON.stringify([order]) })
    expect((await posted.json()).accepted).toBe(1)
    const admin = { authorization: `Bearer ${playground.devAdminToken}` }
    const stored = (await (await fetch(`${playground.url}/admin/events?name=OrderCreated`, { headers: admin })).json()).events[0]
    expect(stored.payload).toEqual({ orderId: 'o1', customer: { email: expect.stringMatching(/^hmac-sha256:[0-9a-f]{64}$/), phone: '***' }, items: [{ sku: 's' }] })
    expect((await (await fetch(`${playground.url}/admin/events/stats`, { headers: admin })).json()).redacted).toEqual({ events: 1, dropped: 1, masked: 1, hashed: 1 })
    expect(await (await fetch(`${playground.url}/`)).text()).toContain('fields redacted before storage (PII)')
  })

  it('limits ingest requests per address, and counts the 429s in the stats the dashboard shows', async () => {
    let refused: Response | undefined
    for (let i = 0; i < 61 && !refused; i++) {
      const response = await fetch(`${playground.url}/events/ingest`, { method: 'POST', headers: json, body: JSON.stringify([makeEvent()]) })
      if (response.status === 429) refused = response
      else expect(response.status).toBe(200)
    }
    expect(refused, 'a 429 within 61 requests').toBeDefined()
    expect(await refused!.json()).toMatchObject({ code: 'rate_limited', limit: 'perAddress', points: 60, durationSeconds: 60 })
    expect(Number(refused!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    const stats = await (await fetch(`${playground.url}/admin/events/stats`, { headers: { authorization: `Bearer ${playground.devAdminToken}` } })).json()
    expect(stats.rateLimits).toEqual({ refused: 1, byLimit: { perAddress: 1 }, storeErrors: 0 })
    expect(playground.output()).toContain('rate limits   60 ingest requests a minute per address')
    const page = await (await fetch(`${playground.url}/`)).text()
    expect(page).toContain('requests refused by rate limits (429)')
  })

  it('keeps batches posted to /sink with their headers', async () => {
    const post = await fetch(`${playground.url}/sink`, { method: 'POST', headers: { ...json, 'idempotency-key': `batch-${framework}` }, body: JSON.stringify([makeEvent()]) })
    expect(post.status).toBe(200)
    const { batches } = await (await fetch(`${playground.url}/sink`)).json()
    expect(batches[0]).toMatchObject({ events: 1, headers: { 'idempotency-key': `batch-${framework}` } })
  })
})

describe('playground with EVENT_STORAGE, EVENT_INGEST_TOKEN and EVENT_ADMIN_TOKEN set', () => {
  let playground: RunningPlayground
  let dir: string
  const env = { EVENT_INGEST_TOKEN: 'ingest-secret-1,ingest-secret-2', EVENT_ADMIN_TOKEN: 'admin-secret-123' }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'playground-fs-'))
    playground = await startPlayground((url) => ({ ...env, EVENT_STORAGE: `fs:${dir}`, EVENT_SINK_URL: `${url}/sink` }))
  })
  afterAll(async () => {
    await playground?.stop()
    if (dir) await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 })
  })

  it('uses the configured tokens, prints them masked and generates none', () => {
    expect(playground.devAdminToken).toBeUndefined()
    const output = playground.output()
    expect(output).not.toContain('admin-secret-123')
    expect(output).not.toContain('ingest-secret-1')
    expect(output).toContain('from EVENT_ADMIN_TOKEN')
    expect(output).toContain(`forwarding to ${playground.url}/sink`)
  })

  it('requires the ingest token and stores in the fs directory', async () => {
    const body = JSON.stringify([makeEvent()])
    expect((await fetch(`${playground.url}/events/ingest`, { method: 'POST', headers: json, body })).status).toBe(401)
    const response = await fetch(`${playground.url}/events/ingest`, { method: 'POST', headers: { ...json, 'x-event-token': 'ingest-secret-2' }, body })
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ accepted: 1 })
    expect((await readdir(dir, { recursive: true })).length).toBeGreaterThan(0)
  })

  it('forwards accepted events to its own sink, end to end', async () => {
    const event = makeEvent()
    const response = await fetch(`${playground.url}/events/ingest`, { method: 'POST', headers: { ...json, 'x-event-token': 'ingest-secret-1' }, body: JSON.stringify([event]) })
    expect(response.status).toBe(200)
    await expect.poll(async () => JSON.stringify(await (await fetch(`${playground.url}/sink`)).json()), { timeout: 10_000 }).toContain(event.id)
  })

  it('accepts the configured admin token and injects both tokens into the dashboard only', async () => {
    expect((await fetch(`${playground.url}/admin/events/stats`, { headers: { authorization: 'Bearer admin-secret-123' } })).status).toBe(200)
    const html = await (await fetch(`${playground.url}/`)).text()
    expect(html).toContain('"adminToken":"admin-secret-123"')
    expect(html).toContain('"ingestToken":"ingest-secret-1"')
  })
})
