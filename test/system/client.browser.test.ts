import { createServer } from 'node:http'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { build } from 'esbuild'
import { H3, toNodeHandler } from 'h3'
import type { BrowserContext, Page } from 'playwright-core'
import { launchChromium } from '../helpers/chromium'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest, type EventIngest } from '../../src/index'
import { eventIngestPlugin } from '../../adapters/h3'
import { projectRoot } from '../helpers/process'
import { closeServer, listen } from '../helpers/servers'
import { waitFor } from '../helpers/sink'

const HOUR = 3_600_000

// The storefront's page: the client bundled as an ES module, created with a publishable key.
const page = `<!doctype html><meta charset="utf-8"><title>shop</title><body>
<script type="module">
import { createEventClient } from '/client.js'
window.errors = []
window.events = createEventClient({ endpoint: location.origin, key: 'pk_test_storefront', source: 'storefront', flushInterval: 600000, onError: (error) => window.errors.push(error.code + ': ' + error.message) })
document.body.dataset.ready = '1'
</script>`

/** Moves the page's clock: `Date` and `Date.now()` read `offsetMs` ahead of the real time. */
const clockOffBy = (offsetMs: number) => {
  const RealDate = Date
  class OffDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(RealDate.now() + offsetMs)
      else super(...(args as [string]))
    }
    static override now() {
      return RealDate.now() + offsetMs
    }
  }
  globalThis.Date = OffDate as DateConstructor
}

describe('event-ingest/client in headless Chromium', () => {
  let ingest: EventIngest<any>
  let server: ReturnType<typeof createServer>
  let url: string
  /** The content encoding of each ingest request, in order. */
  const encodings: string[] = []
  let setFailNext: (value: boolean) => void = () => {}
  let profile: string
  let context: BrowserContext
  const pageErrors: string[] = []

  beforeAll(async () => {
    const bundled = await build({ entryPoints: [join(projectRoot, 'src/client/index.ts')], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false })
    const clientJs = bundled.outputFiles[0]!.text
    ingest = createEventIngest({ env: {} })
    // The next JSON batch (not a beacon) is answered 503 with a minute's Retry-After.
    const failNext = () => failing
    let failing = false
    setFailNext = (value) => (failing = value)
    await ingest.ready()
    const app = new H3()
      .use((event) => {
        if (event.url.pathname === '/events/ingest') encodings.push(event.req.headers.get('content-encoding') ?? 'identity')
        if (failNext() && event.url.pathname === '/events/ingest' && event.req.headers.get('content-type') === 'application/json') {
          setFailNext(false)
          return new Response(JSON.stringify({ code: 'storage_unavailable', message: 'storage is unavailable' }), { status: 503, headers: { 'content-type': 'application/json', 'retry-after': '60' } })
        }
      })
      .get('/shop', () => new Response(page, { headers: { 'content-type': 'text/html; charset=utf-8' } }))
      .get('/client.js', () => new Response(clientJs, { headers: { 'content-type': 'text/javascript' } }))
      .register(eventIngestPlugin(ingest))
    server = createServer(toNodeHandler(app))
    url = await listen(server)
    ;({ context, profile } = await launchChromium('client-chromium-'))
  })

  afterAll(async () => {
    await context?.close()
    if (server) await closeServer(server)
    await ingest?.close()
    if (profile) await rm(profile, { recursive: true, force: true })
  })

  async function openShop(setup?: (page: Page) => Promise<void>): Promise<Page> {
    const tab = await context.newPage()
    tab.on('pageerror', (error) => pageErrors.push(error.message))
    await setup?.(tab)
    await tab.goto(`${url}/shop`)
    await tab.waitForSelector('body[data-ready="1"]', { state: 'attached' })
    return tab
  }

  const storedById = async (ids: string[]) => {
    const { events } = await ingest.events({ limit: 1000 })
    return events.filter((event) => ids.includes(event.id))
  }

  it('delivers events tracked just before the page navigates away', async () => {
    const tab = await openShop()
    const ids = await tab.evaluate(() => {
      const events = (window as any).events
      return [
        events.track('ProductViewed', { productId: 'prod_1' }),
        events.track('CartUpdated', { cartId: 'cart_1', quantity: 2 }),
        events.track('CheckoutStarted', { cartId: 'cart_1' }),
      ] as string[]
    })
    // Nothing sent yet: the interval is ten minutes away, and flushAt is 20.
    expect(await storedById(ids)).toEqual([])
    expect(await tab.evaluate(() => (window as any).events.size)).toBe(3)
    expect(await tab.evaluate(() => (window as any).errors)).toEqual([])
    await tab.goto('about:blank')
    await waitFor(async () => (await storedById(ids)).length === 3, 10_000, 'the beaconed events')
    const stored = await storedById(ids)
    expect(new Set(stored.map((event) => event.name))).toEqual(new Set(['ProductViewed', 'CartUpdated', 'CheckoutStarted']))
    expect(stored.every((event) => event.source === 'storefront')).toBe(true)
    await tab.close()
    expect(pageErrors).toEqual([])
  })

  it('delivers a batch waiting a minute for its retry when the page is left', async () => {
    setFailNext(true)
    const tab = await openShop()
    const ids = await tab.evaluate(() => {
      const events = (window as any).events
      const tracked = [events.track('ProductViewed', { productId: 'prod_r1' }), events.track('ProductViewed', { productId: 'prod_r2' })] as string[]
      void events.flush()
      return tracked
    })
    const queuedLater = await tab.evaluate(async () => {
      await new Promise((resolve) => setTimeout(resolve, 300))
      return (window as any).events.track('CartUpdated', { cartId: 'cart_r' }) as string
    })
    // The first attempt was answered 503 and the client now waits for Retry-After: 60.
    expect(await storedById([...ids, queuedLater])).toEqual([])
    await tab.goto('about:blank')
    await waitFor(async () => (await storedById([...ids, queuedLater])).length === 3, 10_000, 'the batch in retry and the one queued behind it')
    await tab.close()
    expect(pageErrors).toEqual([])
  })

  it('gzips a large batch with CompressionStream, and the server stores it', async () => {
    const tab = await openShop()
    const before = encodings.length
    const ids = await tab.evaluate(async () => {
      const events = (window as any).events
      const tracked = Array.from({ length: 15 }, (_, n) => events.track('ProductViewed', { productId: `prod_gz_${n}`, description: 'a long description '.repeat(20) })) as string[]
      await events.flush()
      return tracked
    })
    expect(encodings.slice(before)).toEqual(['gzip'])
    expect((await storedById(ids)).length).toBe(15)
    expect(await tab.evaluate(() => (window as any).errors)).toEqual([])
    await tab.close()
  })

  it('gives correct lag from a page whose clock is an hour ahead, by fetch and by beacon', async () => {
    const tab = await openShop(async (page) => {
      await page.addInitScript(clockOffBy, HOUR)
    })
    expect(await tab.evaluate(() => Date.now())).toBeGreaterThan(Date.now() + HOUR - 60_000)
    const fetched = await tab.evaluate(async () => {
      const events = (window as any).events
      const id = events.track('ProductViewed', { productId: 'prod_fetch' }) as string
      await events.flush()
      return id
    })
    const beaconed = await tab.evaluate(() => (window as any).events.track('ProductViewed', { productId: 'prod_beacon' }) as string)
    expect(await tab.evaluate(() => (window as any).errors)).toEqual([])
    await tab.goto('about:blank')
    await waitFor(async () => (await storedById([fetched, beaconed])).length === 2, 10_000, 'both events')
    const now = Date.now()
    for (const event of await storedById([fetched, beaconed])) {
      // occurredAt is kept as the page's clock said it; the corrected time is the real one.
      expect(Date.parse(event.occurredAt)).toBeGreaterThan(now + HOUR - 60_000)
      expect(event.clockSkewMs).toBeLessThan(-HOUR + 60_000)
      expect(event.clockSkewMs).toBeGreaterThan(-HOUR - 60_000)
      expect(Math.abs(Date.parse(event.correctedOccurredAt!) - now)).toBeLessThan(60_000)
    }
    const stats = await ingest.stats()
    expect(stats.lag.count).toBeGreaterThanOrEqual(2)
    expect(stats.lag.p99Ms).toBeGreaterThanOrEqual(0)
    expect(stats.lag.p99Ms).toBeLessThan(60_000)
    expect(stats.clockSkew.corrected).toBeGreaterThanOrEqual(2)
    expect(await tab.evaluate(() => location.href)).toBe('about:blank')
    await tab.close()
    expect(pageErrors).toEqual([])
  })
})
