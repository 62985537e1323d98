import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BrowserContext, Page } from 'playwright-core'
import { launchChromium } from '../helpers/chromium'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPlayground, type RunningPlayground } from '../helpers/playground-process'
import { freePort } from '../helpers/process'
import { startSink } from '../helpers/sink'

const artifacts = fileURLToPath(new URL('./.artifacts/', import.meta.url))

describe('playground dashboard in headless Chromium', () => {
  let playground: RunningPlayground
  let profile: string
  let context: BrowserContext
  let page: Page
  const pageErrors: string[] = []

  beforeAll(async () => {
    // Fails, never skips: the dashboard is part of what CI checks.
    ;[playground, { context, profile }] = await Promise.all([
      startPlayground({ FRAMEWORK: 'h3' }),
      launchChromium('playground-chromium-', { width: 1400, height: 1200 }),
    ])
    page = context.pages()[0] ?? (await context.newPage())
    page.on('pageerror', (error) => pageErrors.push(error.message))
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text())
    })
  })

  afterAll(async () => {
    await context?.close()
    await playground?.stop()
    if (profile) await rm(profile, { recursive: true, force: true })
  })

  const total = async (name: string) => Number(await page.getAttribute(`[data-total="${name}"]`, 'data-value'))

  it('updates totals, chart, recent events and rejections after "Send sample events"', async () => {
    // A batch from "outside" so the Sink panel has something to show.
    await fetch(`${playground.url}/sink`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'batch-from-test-1' },
      body: JSON.stringify({ events: [{ id: 'evt_sink_1', name: 'OrderCreated' }] }),
    })

    await page.goto(`${playground.url}/`)
    // First refresh done: stats loaded with the injected dev admin token.
    await page.waitForSelector('[data-total="accepted"][data-value]')
    expect(await total('accepted')).toBe(0)
    expect(await page.getAttribute('#chart svg', 'data-bars')).toBe('0')
    await expect.poll(() => page.textContent('#sink-table tbody')).toContain('batch-from-test-1')

    await page.click('text=Send sample events')
    await page.waitForFunction(() => Number(document.querySelector('[data-total="accepted"]')?.getAttribute('data-value')) > 0)

    const accepted = await total('accepted')
    expect(accepted).toBeGreaterThanOrEqual(14)
    expect(await total('duplicates')).toBe(1)
    expect(await total('rejected')).toBe(3)
    expect(await total('storage')).toBe(0)
    expect(await page.textContent('#post-result')).toBe(`batch #1: accepted ${accepted}, duplicates 1, rejected 3`)

    // The chart: one bar (this minute) whose segments add up to the accepted events and the rejected ones.
    expect(Number(await page.getAttribute('#chart svg', 'data-bars'))).toBeGreaterThanOrEqual(1)
    expect(Number(await page.getAttribute('#chart svg', 'data-events'))).toBe(accepted)
    const segments = await page.$$eval('#chart rect[data-name]', (rects) => rects.map((r) => [r.getAttribute('data-name'), Number(r.getAttribute('data-count'))] as const))
    expect(segments.reduce((sum, [, count]) => sum + count, 0)).toBe(accepted + 3)
    expect(new Set(segments.map(([name]) => name))).toEqual(new Set([
      'ProductViewed', 'CartUpdated', 'CheckoutStarted', 'PromoApplied', 'OrderCreated', 'EmailSent', 'FeatureUsageEvent',
      'DashboardViewed', 'BotCommand', 'AgentHeartbeat', 'rejected',
    ]))

    // Lag percentiles are filled in.
    expect(await page.textContent('[data-lag="p50"] .value')).toMatch(/\d/)
    expect(await page.textContent('[data-lag="p99"] .value')).toMatch(/\d/)

    // Recent events: the 20 newest, from every source.
    await expect.poll(() => page.locator('#recent tbody tr[data-id]').count()).toBe(Math.min(20, accepted))
    const sources = await page.$$eval('#recent tbody tr[data-id] td:nth-child(3)', (cells) => cells.map((c) => c.textContent))
    expect(new Set(sources).size).toBeGreaterThanOrEqual(4)

    // The sample order's and e-mail's personal data, redacted before storage and counted (the
    // order's retry in the same batch is a duplicate: not stored, not counted).
    await expect.poll(() => page.textContent('#failures')).toContain('fields redacted before storage (PII)1 dropped, 1 masked, 2 hashed (2 events)')
    expect(await page.textContent('#recent tbody')).not.toContain('@example.com')
    expect(await page.textContent('#recent tbody')).toContain('hmac-sha256:')

    // Rejections from the page's own post, with their messages.
    const rejected = await page.textContent('#rejected tbody')
    expect(rejected).toContain('occurredAt: expected an ISO 8601 timestamp')
    expect(rejected).toContain('source: OrderCreated is expected from api, got "storefront"')
    expect(rejected).toContain('name: unknown event name "OrderShipped"')

    await mkdir(artifacts, { recursive: true })
    await page.screenshot({ path: join(artifacts, 'playground-dashboard.png'), fullPage: true })
    expect(pageErrors).toEqual([])
  })

  it('tracks a storefront session with event-ingest/client from the page, stored and shown', async () => {
    const before = await total('accepted')
    await page.click('#track')
    await page.waitForFunction(() => /events delivered|failed|: /.test(document.querySelector('#client-result')?.textContent ?? ''))
    expect(await page.textContent('#client-result')).toBe('client session #1: 4 events delivered')
    const ids = (await page.getAttribute('#client-result', 'data-ids'))!.split(' ')
    expect(ids).toHaveLength(4)
    // Stored once each, as the storefront's, with the send time the client put on the attempt.
    const admin = { authorization: `Bearer ${playground.devAdminToken}` }
    const stored = (await (await fetch(`${playground.url}/admin/events?limit=100`, { headers: admin })).json()).events as { id: string; source: string }[]
    for (const id of ids) expect(stored.filter((e) => e.id === id).map((e) => e.source)).toEqual(['storefront'])
    await page.waitForFunction((n) => Number(document.querySelector('[data-total="accepted"]')?.getAttribute('data-value')) >= n, before + 4)
    await page.waitForSelector(`#recent tr[data-id="${ids[3]}"]`, { timeout: 5000 })
    expect(pageErrors).toEqual([])
  })

  it('refreshes by itself every 2 s', async () => {
    const before = Number(await page.getAttribute('body', 'data-refreshes'))
    await fetch(`${playground.url}/events/ingest`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ id: 'evt_from_outside_1', name: 'AgentHeartbeat', schemaVersion: 1, occurredAt: new Date().toISOString(), source: 'agent', payload: { instanceId: 'inst_9' } }]),
    })
    await page.waitForSelector('#recent tr[data-id="evt_from_outside_1"]', { timeout: 5000 })
    expect(Number(await page.getAttribute('body', 'data-refreshes'))).toBeGreaterThan(before)
  })
})

describe('playground dashboard: forwarding, dead letters and a restart', () => {
  let sink: Awaited<ReturnType<typeof startSink>>
  let playground: RunningPlayground | undefined
  let profile: string
  let context: BrowserContext
  let page: Page
  let port: number
  const pageErrors: string[] = []
  const env = () => ({ FRAMEWORK: 'express', PORT: String(port), EVENT_SINK_URL: sink.url })

  beforeAll(async () => {
    // A sink of this test's own, so it can refuse and then accept.
    sink = await startSink(() => ({ status: 422, body: '{"code":"schema_mismatch","message":"payload.sku: is required"}' }))
    port = await freePort()
    ;[playground, { context, profile }] = await Promise.all([
      startPlayground(env()),
      launchChromium('playground-chromium-', { width: 1400, height: 1400 }),
    ])
    page = context.pages()[0] ?? (await context.newPage())
    page.on('pageerror', (error) => pageErrors.push(error.message))
  })

  afterAll(async () => {
    await context?.close()
    await playground?.stop()
    await sink?.close()
    if (profile) await rm(profile, { recursive: true, force: true })
  })

  it('shows the outbox state and the dead letters, and requeues one with its button', async () => {
    await page.goto(`${playground!.url}/`)
    await page.waitForSelector('#forwarding-body:not([hidden]) [data-forwarding="backlog"]')
    expect(await page.textContent('[data-forwarding="sink"]')).toContain('/sink')
    expect(await page.textContent('#dead-letters tbody')).toContain('No dead letters')

    const event = { id: 'evt_dead_1', name: 'OrderCreated', schemaVersion: 1, occurredAt: new Date().toISOString(), source: 'api', payload: { orderId: 'ord_1' } }
    const posted = await fetch(`${playground!.url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([event]) })
    expect(posted.status).toBe(200)
    const row = page.locator('#dead-letters tr[data-letter]')
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1)
    expect(await row.textContent()).toContain('422')
    expect(await row.textContent()).toContain('payload.sku: is required')
    await expect.poll(() => page.getAttribute('[data-forwarding="dead-letters"]', 'data-value')).toBe('1')
    expect(await page.getAttribute('[data-forwarding="backlog"]', 'data-value')).toBe('0')
    expect(await page.textContent('[data-forwarding="failures"]')).toContain('rejected 1')

    sink.set(() => ({ status: 200 }))
    await page.click('#dead-letters [data-requeue]')
    await expect.poll(() => page.textContent('#requeue-result')).toBe('requeued 1')
    await expect.poll(() => sink.storedIds(), { timeout: 10_000 }).toEqual(['evt_dead_1'])
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(0)
    await expect.poll(() => page.getAttribute('[data-forwarding="forwarded"]', 'data-value'), { timeout: 5000 }).toBe('1')
    expect(await page.getAttribute('[data-forwarding="dead-letters"]', 'data-value')).toBe('0')
    await mkdir(artifacts, { recursive: true })
    await page.screenshot({ path: join(artifacts, 'playground-forwarding.png'), fullPage: true })
    expect(pageErrors).toEqual([])
  })

  it('says the admin token changed, and to reload, after the playground restarts', async () => {
    const before = playground!.devAdminToken
    await playground!.stop()
    playground = undefined
    playground = await startPlayground(env())
    expect(playground.devAdminToken).not.toBe(before)
    const banner = page.locator('#errors[data-problem="token-changed"]')
    await banner.waitFor({ timeout: 10_000 })
    expect(await banner.textContent()).toMatch(/^The admin token changed \(the playground was restarted.*reload the page/)
    expect(await banner.textContent()).not.toContain('401')
    await page.click('#errors a')
    await page.waitForSelector('[data-total="accepted"][data-value]')
    await expect.poll(() => page.textContent('#errors'), { timeout: 5000 }).toBe('')
    expect(await page.getAttribute('#errors', 'data-problem')).toBeNull()
  })
})
