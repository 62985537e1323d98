import { rm } from 'node:fs/promises'
import type { BrowserContext, Page } from 'playwright-core'
import { launchChromium } from '../helpers/chromium'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPlayground, type RunningPlayground } from '../helpers/playground-process'
import { freePort } from '../helpers/process'


describe('playground dashboard: the local sink failing, requeue and replay', () => {
  let playground: RunningPlayground
  let profile: string
  let context: BrowserContext
  let page: Page
  const pageErrors: string[] = []

  beforeAll(async () => {
    const port = await freePort()
    // The playground forwards to its own local sink, whose mode the page switches.
    ;[playground, { context, profile }] = await Promise.all([
      startPlayground({ FRAMEWORK: 'koa', PORT: String(port), EVENT_SINK_URL: `http://127.0.0.1:${port}/sink` }),
      launchChromium('playground-chromium-', { width: 1400, height: 1600 }),
    ])
    page = context.pages()[0] ?? (await context.newPage())
    page.on('pageerror', (error) => pageErrors.push(error.message))
  })

  afterAll(async () => {
    await context?.close()
    await playground?.stop()
    if (profile) await rm(profile, { recursive: true, force: true })
  })

  const sinkIds = async () => {
    const { batches } = (await (await fetch(`${playground.url}/sink`)).json()) as { batches: { body: { id: string }[] }[] }
    return batches.flatMap((batch) => batch.body.map((event) => event.id))
  }

  it('shows a dead letter with the sink answer, requeues it, and replays to done', async () => {
    await page.goto(`${playground.url}/`)
    await page.waitForSelector('#forwarding-body:not([hidden]) [data-forwarding="backlog"]')
    await page.click('[data-sink-mode="fail"]')
    await expect.poll(() => page.textContent('#sink-mode')).toBe('the local sink answers: fail')

    const event = { id: 'evt_replay_1', name: 'OrderCreated', schemaVersion: 1, occurredAt: new Date().toISOString(), source: 'api', payload: { orderId: 'ord_1' } }
    const posted = await fetch(`${playground.url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([event]) })
    expect(posted.status).toBe(200)
    const row = page.locator('#dead-letters tr[data-letter]')
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1)
    expect(await row.textContent()).toContain('422')
    expect(await row.textContent()).toContain('the playground sink is in fail mode')

    await page.click('[data-sink-mode="ok"]')
    await expect.poll(() => page.textContent('#sink-mode')).toBe('the local sink answers: ok')
    await page.click('#dead-letters [data-requeue]')
    await expect.poll(() => page.textContent('#requeue-result')).toBe('requeued 1')
    await expect.poll(sinkIds, { timeout: 10_000 }).toEqual(['evt_replay_1'])
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(0)

    await page.click('#replay-start')
    await expect.poll(() => page.textContent('#replay-result')).toMatch(/^replay .+ started$/)
    const replay = page.locator('#replays tr[data-replay]')
    await expect.poll(() => page.getAttribute('#replays [data-replay-state]', 'data-replay-state'), { timeout: 10_000 }).toBe('done')
    expect(await replay.count()).toBe(1)
    expect(await page.textContent('#replays [data-replay-batches]')).toBe('1 · 1 · 0')
    expect(await page.textContent('#replays [data-replay-events]')).toBe('1 · 1 · 0')
    expect(await sinkIds()).toEqual(['evt_replay_1', 'evt_replay_1'])
    expect(pageErrors).toEqual([])
  })
})
