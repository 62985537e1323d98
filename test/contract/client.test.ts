import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createEventClient, type ClientEnvelope, type EventClientError, type EventClientOptions, type QueueStorage } from 'event-ingest/client'
import type { EventIngestOptions } from 'event-ingest'
import { startRecordingProxy, type ProxyBehaviour } from '../helpers/recording-proxy'
import { h3Host, startHost, type RunningHost } from '../helpers/servers'
import { waitFor } from '../helpers/sink'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

/** A real event-ingest server on loopback, behind a recording proxy the client talks to. */
async function setup(options: { server?: EventIngestOptions<any>; proxy?: ProxyBehaviour; client?: Partial<EventClientOptions> } = {}) {
  const host: RunningHost = await startHost(h3Host, options.server)
  const proxy = await startRecordingProxy(host.url, options.proxy)
  const errors: EventClientError[] = []
  const client = createEventClient({ endpoint: proxy.url, source: 'storefront', flushInterval: 60_000, flushAt: 1000, retry: { minDelayMs: 10, maxDelayMs: 50 }, onError: (error) => errors.push(error), ...options.client })
  cleanups.push(async () => {
    await client.close()
    await proxy.close()
    await host.close()
  })
  const stored = async () => (await host.ingest.events({ limit: 1000 })).events
  return { host, proxy, client, errors, stored }
}

const product = (n: number) => ({ productId: `prod_${n}` })

describe('event-ingest/client against a real server', () => {
  it('builds the envelope: a UUID id, ISO occurredAt, the source, schemaVersion, and x-event-sent-at', async () => {
    const { client, proxy, stored } = await setup()
    const id = client.track('ProductViewed', product(1), { subjectId: 'usr_1', companyId: 'co_1' })
    const at = new Date('2026-11-02T14:03:11.000Z')
    client.track('CartUpdated', { cartId: 'c1' }, { id: 'evt_mine', occurredAt: at })
    await client.flush()
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    const events = await stored()
    expect(events.map((event) => event.id).sort()).toEqual([id, 'evt_mine'].sort())
    expect(events.find((event) => event.id === id)).toMatchObject({ name: 'ProductViewed', schemaVersion: 1, source: 'storefront', subjectId: 'usr_1', companyId: 'co_1', payload: product(1) })
    expect(events.find((event) => event.id === 'evt_mine')?.occurredAt).toBe('2026-11-02T14:03:11.000Z')
    expect(proxy.seen).toHaveLength(1)
    const sentAt = Date.parse(String(proxy.seen[0]!.headers['x-event-sent-at']))
    expect(Math.abs(sentAt - proxy.seen[0]!.at)).toBeLessThan(5000)
  })

  it('sends as soon as flushAt events are queued, and holds fewer', async () => {
    const { client, proxy, stored } = await setup({ client: { flushAt: 5 } })
    for (let n = 0; n < 4; n++) client.track('ProductViewed', product(n))
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(proxy.seen).toHaveLength(0)
    client.track('ProductViewed', product(4))
    await waitFor(async () => (await stored()).length === 5, 5000, 'the batch of five')
    expect(proxy.seen.map((request) => request.ids.length)).toEqual([5])
  })

  it("splits batches by count under the server's maxEvents, read from GET /events/schema", async () => {
    const { client, proxy, stored } = await setup({ server: { limits: { maxEvents: 10 } } })
    const ids = Array.from({ length: 25 }, (_, n) => client.track('ProductViewed', product(n)))
    await client.flush()
    expect(proxy.seen.map((request) => request.ids.length)).toEqual([10, 10, 5])
    expect(proxy.seen.flatMap((request) => request.ids)).toEqual(ids)
    expect((await stored()).length).toBe(25)
  })

  it("splits batches by bytes under the server's maxBodyBytes and the client's maxBatchBytes", async () => {
    const { client, proxy, stored } = await setup({ server: { limits: { maxBodyBytes: 4000 } }, client: { compression: false } })
    for (let n = 0; n < 30; n++) client.track('ProductViewed', { productId: `prod_${n}`, note: 'x'.repeat(200) })
    await client.flush()
    expect(proxy.seen.length).toBeGreaterThan(1)
    for (const request of proxy.seen) expect(request.raw.length).toBeLessThanOrEqual(4000)
    expect((await stored()).length).toBe(30)

    const small = await setup({ client: { maxBatchBytes: 2000, compression: false } })
    for (let n = 0; n < 12; n++) small.client.track('ProductViewed', { productId: `prod_${n}`, note: 'y'.repeat(200) })
    // No flush() and no interval: the bytes alone send it.
    await waitFor(() => small.proxy.seen.length > 0, 5000, 'a batch sent by size')
    await small.client.flush()
    for (const request of small.proxy.seen) expect(request.raw.length).toBeLessThanOrEqual(2000)
    expect((await small.stored()).length).toBe(12)
  })

  it('sends queued events after flushInterval, in one batch', async () => {
    const { client, proxy, stored } = await setup({ client: { flushInterval: 250 } })
    client.track('ProductViewed', product(1))
    client.track('ProductViewed', product(2))
    client.track('ProductViewed', product(3))
    expect(proxy.seen).toHaveLength(0)
    await waitFor(async () => (await stored()).length === 3, 5000, 'the interval flush')
    expect(proxy.seen.map((request) => request.ids.length)).toEqual([3])
  })

  it('retries a 503 whose batch was stored, with the same ids: delivered once, no duplicate stored', async () => {
    const { client, proxy, host, stored, errors } = await setup({
      proxy: (_request, n) => (n === 1 ? { status: 503, forward: true, headers: { 'retry-after': '0' }, body: { code: 'in_progress', message: 'a write of this batch is in progress' } } : 'forward'),
    })
    const ids = [client.track('ProductViewed', product(1)), client.track('ProductViewed', product(2))]
    await client.flush()
    expect(proxy.seen).toHaveLength(2)
    expect(proxy.seen[1]!.ids).toEqual(proxy.seen[0]!.ids)
    expect(proxy.seen[0]!.ids).toEqual(ids)
    // Each attempt carries its own send time.
    expect(proxy.seen[1]!.headers['x-event-sent-at']).not.toBe(proxy.seen[0]!.headers['x-event-sent-at'])
    const events = await stored()
    expect(events.map((event) => event.id).sort()).toEqual([...ids].sort())
    const stats = await host.ingest.stats()
    expect(stats.totals).toMatchObject({ accepted: 2, duplicates: 2 })
    expect(errors).toEqual([])
  })

  it('does not retry a 400, and reports it', async () => {
    const { client, proxy, errors } = await setup({ proxy: () => ({ status: 400, body: { code: 'invalid_json', message: 'body is not JSON' } }) })
    const id = client.track('ProductViewed', product(1))
    await client.flush()
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(proxy.seen).toHaveLength(1)
    expect(errors.map((error) => [error.code, error.status, error.events.map((event) => event.id)])).toEqual([['refused', 400, [id]]])
  })

  it("does not retry the real server's 401, and the next batch still goes out", async () => {
    const { client, proxy, errors, stored } = await setup({ server: { token: 'right' }, client: { token: 'wrong' } })
    client.track('ProductViewed', product(1))
    await client.flush()
    expect(proxy.seen).toHaveLength(1)
    expect(errors.map((error) => [error.code, error.status])).toEqual([['refused', 401]])
    expect(await stored()).toEqual([])
    const good = await setup({ server: { token: 'right' }, client: { token: 'right' } })
    good.client.track('ProductViewed', product(2))
    await good.client.flush()
    expect(good.proxy.seen[0]!.headers['x-event-token']).toBe('right')
    expect((await good.stored()).length).toBe(1)
  })

  it('honours Retry-After over its own backoff', async () => {
    const { client, proxy, stored } = await setup({
      client: { retry: { minDelayMs: 1, maxDelayMs: 1 } },
      proxy: (_request, n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' }, body: { code: 'rate_limited', message: 'slow down' } } : 'forward'),
    })
    client.track('ProductViewed', product(1))
    await client.flush()
    expect(proxy.seen).toHaveLength(2)
    expect(proxy.seen[1]!.at - proxy.seen[0]!.at).toBeGreaterThanOrEqual(950)
    expect((await stored()).length).toBe(1)
  })

  it('retries network errors, 408 and 5xx, and reports a batch once its attempts run out', async () => {
    const statuses = [408, 500, 502]
    const { client, proxy, stored, errors } = await setup({ proxy: (_request, n) => (n <= statuses.length ? { status: statuses[n - 1]! } : 'forward') })
    client.track('ProductViewed', product(1))
    await client.flush()
    expect(proxy.seen).toHaveLength(4)
    expect((await stored()).length).toBe(1)
    expect(errors).toEqual([])

    const down = await setup({ client: { retry: { attempts: 3, minDelayMs: 1, maxDelayMs: 5 } }, proxy: () => ({ status: 503, body: { code: 'storage_unavailable', message: 'down' } }) })
    const id = down.client.track('ProductViewed', product(2))
    await down.client.flush()
    expect(down.proxy.seen).toHaveLength(3)
    expect(down.errors.map((error) => [error.code, error.events.map((event) => event.id)])).toEqual([['retries_exhausted', [id]]])

    const errorsNoServer: EventClientError[] = []
    const unreachable = createEventClient({ endpoint: 'http://127.0.0.1:9', source: 'api', retry: { attempts: 2, minDelayMs: 1, maxDelayMs: 1 }, onError: (error) => errorsNoServer.push(error) })
    unreachable.track('OrderCreated', { orderId: 'o1' })
    await unreachable.close()
    expect(errorsNoServer.map((error) => error.code)).toEqual(['retries_exhausted'])
  })

  it('drops the oldest queued events when the queue is full, and reports them', async () => {
    const { client, errors, stored } = await setup({ client: { maxQueue: 5 } })
    const ids = Array.from({ length: 8 }, (_, n) => client.track('ProductViewed', product(n)))
    expect(client.size).toBe(5)
    expect(errors.map((error) => error.code)).toEqual(['queue_full', 'queue_full', 'queue_full'])
    expect(errors.flatMap((error) => error.events.map((event) => event.id))).toEqual(ids.slice(0, 3))
    await client.flush()
    expect((await stored()).map((event) => event.id).sort()).toEqual(ids.slice(3).sort())
  })

  it('close() delivers everything pending, through a retry, and reports track() after it', async () => {
    const { client, stored, errors } = await setup({ proxy: (_request, n) => (n === 2 ? { status: 503, headers: { 'retry-after': '0' }, body: { code: 'storage_unavailable', message: 'x' } } : 'forward'), server: { limits: { maxEvents: 10 } } })
    const ids = Array.from({ length: 30 }, (_, n) => client.track('ProductViewed', product(n)))
    await client.close()
    expect(client.size).toBe(0)
    expect((await stored()).map((event) => event.id).sort()).toEqual([...ids].sort())
    client.track('ProductViewed', product(99))
    expect(errors.map((error) => error.code)).toEqual(['closed'])
  })

  it('close({ timeoutMs }) reports what it could not deliver in time, and a storage keeps it for the next start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ei-client-close-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'queue.json')
    const storage: QueueStorage = {
      load: () => [],
      save: async (events) => {
        await writeFile(`${file}.tmp`, JSON.stringify(events))
        await rename(`${file}.tmp`, file)
      },
    }
    const { client, errors, proxy } = await setup({
      server: { limits: { maxEvents: 2 } },
      client: { storage },
      proxy: () => ({ status: 503, headers: { 'retry-after': '60' }, body: { code: 'storage_unavailable', message: 'down' } }),
    })
    const ids = [1, 2, 3].map((n) => client.track('ProductViewed', product(n)))
    await client.close({ timeoutMs: 300 })
    expect(proxy.seen).toHaveLength(1)
    expect(client.size).toBe(0)
    expect(errors.map((error) => error.code)).toEqual(['closed', 'closed'])
    expect(errors.flatMap((error) => error.events.map((event) => event.id))).toEqual(ids)
    expect((JSON.parse(await readFile(file, 'utf8')) as ClientEnvelope[]).map((event) => event.id)).toEqual(ids)
  })

  it('gives up on an attempt with no answer within requestTimeout, and retries it', async () => {
    const { client, proxy, stored, errors } = await setup({ client: { requestTimeout: 300 }, proxy: (_request, n) => (n === 1 ? 'hang' : 'forward') })
    const id = client.track('ProductViewed', product(1))
    await client.flush()
    expect(proxy.seen.map((request) => request.ids)).toEqual([[id], [id]])
    expect((await stored()).map((event) => event.id)).toEqual([id])
    expect(errors).toEqual([])
  })

  it('gzips bodies above the threshold, and the server accepts them', async () => {
    const { client, proxy, stored } = await setup({ client: { compression: { threshold: 500 } } })
    client.track('ProductViewed', product(1))
    await client.flush()
    for (let n = 0; n < 20; n++) client.track('ProductViewed', { productId: `prod_${n}`, description: 'a long description '.repeat(10) })
    await client.flush()
    expect(proxy.seen.map((request) => request.headers['content-encoding'])).toEqual([undefined, 'gzip'])
    expect(proxy.seen[1]!.raw.length).toBeLessThan(Buffer.byteLength(proxy.seen[1]!.text) / 3)
    expect((await stored()).length).toBe(21)
  })

  it('reports an event too large to ever fit, never sends it, and delivers the rest', async () => {
    const { client, proxy, errors, stored } = await setup({ server: { limits: { maxEventBytes: 1000 } } })
    const before = client.track('ProductViewed', product(1))
    const big = client.track('ProductViewed', { productId: 'p', blob: 'z'.repeat(2000) })
    const after = client.track('ProductViewed', product(2))
    await client.flush()
    expect(errors.map((error) => [error.code, error.events.map((event) => event.id)])).toEqual([['event_too_large', [big]]])
    expect(proxy.seen.flatMap((request) => request.ids)).not.toContain(big)
    expect((await stored()).map((event) => event.id).sort()).toEqual([before, after].sort())
  })

  it('splits a batch the server refuses with 413 body_too_large, and drops only the event a 413 event_too_large names', async () => {
    const { client, proxy, stored, errors } = await setup({
      proxy: (request, n) => {
        if (n === 1) return { status: 413, body: { code: 'body_too_large', message: 'body is over maxBodyBytes (1000)', limit: 'maxBodyBytes', value: 1000 } }
        if (request.ids.length === 4 && n === 2) return { status: 413, body: { code: 'event_too_large', message: 'event 1 is over maxEventBytes', index: 1, id: request.ids[1] } }
        return 'forward'
      },
    })
    const ids = Array.from({ length: 8 }, (_, n) => client.track('ProductViewed', product(n)))
    await client.flush()
    expect(proxy.seen.map((request) => request.ids.length)).toEqual([8, 4, 4, 3])
    expect(errors.map((error) => [error.code, error.events.map((event) => event.id)])).toEqual([['event_too_large', [ids[1]]]])
    expect((await stored()).map((event) => event.id).sort()).toEqual(ids.filter((_, n) => n !== 1).sort())
  })

  it('reports events the server rejected in a 200, without retrying them', async () => {
    const { client, proxy, errors, stored } = await setup()
    const wrong = (client.track as (name: string, payload: object) => string)('NoSuchEvent', {})
    const right = client.track('ProductViewed', product(1))
    await client.flush()
    expect(proxy.seen).toHaveLength(1)
    expect(errors.map((error) => [error.code, error.events.map((event) => event.id)])).toEqual([['rejected', [wrong]]])
    expect(errors[0]!.message).toContain('unknown event name')
    expect((await stored()).map((event) => event.id)).toEqual([right])
  })

  it('sends a publishable key in the query string, and the secret token only in the header', async () => {
    const { client, proxy } = await setup({ client: { key: 'pk_test_1', token: 'secret' } })
    client.track('ProductViewed', product(1))
    await client.flush()
    const url = new URL(proxy.seen[0]!.path, 'http://x')
    expect(url.searchParams.get('key')).toBe('pk_test_1')
    expect(proxy.seen[0]!.path).not.toContain('secret')
    expect(proxy.seen[0]!.headers['x-event-token']).toBe('secret')
  })

  it('keeps its queue in a storage hook: a restarted process sends what the last one had queued', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ei-client-queue-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'queue.json')
    // The README's file storage.
    const fileStorage = (path: string): QueueStorage => ({
      load: () => readFile(path, 'utf8').then((text) => JSON.parse(text) as ClientEnvelope[]).catch(() => []),
      // A new file renamed over the old: a crash mid-write leaves the previous queue, never half of one.
      save: async (events) => {
        await writeFile(`${path}.tmp`, JSON.stringify(events))
        await rename(`${path}.tmp`, path)
      },
    })
    const first = createEventClient({ endpoint: 'http://127.0.0.1:9', source: 'api', storage: fileStorage(file), flushInterval: 60_000, onError: () => {} })
    const ids = [first.track('OrderCreated', { orderId: 'o1' }), first.track('OrderCreated', { orderId: 'o2' })]
    await waitFor(async () => (await readFile(file, 'utf8').catch(() => '')).includes(ids[1]!), 5000, 'the queue saved')
    // The process ends here without close(); the next one starts from the file.
    const { host, proxy, stored } = await setup()
    const second = createEventClient({ endpoint: proxy.url, source: 'api', storage: fileStorage(file), flushInterval: 60_000 })
    await second.flush()
    expect((await stored()).map((event) => event.id).sort()).toEqual([...ids].sort())
    await second.close()
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual([])
    expect(host.url).toBeTruthy()
  })
})
