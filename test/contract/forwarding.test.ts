import { afterEach, describe, expect, it } from 'vitest'
import { createEventIngest, type EventIngest, type SinkOptions } from 'event-ingest'
import { makeEvent } from '../helpers/fixtures'
import { startSink, waitFor } from '../helpers/sink'
import { h3Host, startHost } from '../helpers/servers'
import { postEvents } from '../helpers/http'
import { z } from 'zod'

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

async function core(sink: SinkOptions, extra: Parameters<typeof createEventIngest>[0] = {}): Promise<EventIngest<any>> {
  const ingest = createEventIngest({ env: {}, sink: { minBackoffMs: 20, maxBackoffMs: 200, heartbeatMs: 200, ...sink }, ...extra })
  await ingest.ready()
  open.push(ingest)
  return ingest
}

async function sinkOf(...args: Parameters<typeof startSink>) {
  const sink = await startSink(...args)
  open.push(sink)
  return sink
}

describe('forwarding to a sink', () => {
  it('forwards accepted events after storing them, without holding the response', async () => {
    const sink = await sinkOf(() => 'hang')
    const ingest = await core({ url: sink.url, timeoutMs: 5000 })
    const started = Date.now()
    const result = await ingest.ingest([makeEvent({ id: 'fw-1' }), makeEvent({ id: 'fw-bad', source: 'web' })])
    expect(result.accepted).toBe(1)
    expect(Date.now() - started).toBeLessThan(1000)
    await waitFor(() => sink.requests.length === 1, 5000, 'the sink request')
    expect(sink.requests[0]!.events.map((e) => e.id)).toEqual(['fw-1'])
    expect(sink.requests[0]!.events[0]).toMatchObject({ name: 'ProductViewed', schemaVersion: 1 })
  })

  it('forwards a batch received over HTTP, which the memory driver keeps as the bytes received', async () => {
    const sink = await sinkOf(() => ({ status: 200 }))
    const ingest = await core({ url: sink.url })
    const events = [makeEvent({ id: 'fw-bytes-1', payload: { note: 'ünïcode ✓' } }), makeEvent({ id: 'fw-bytes-2' })]
    const body = new TextEncoder().encode(`\n ${JSON.stringify(events)}`)
    const chunks = [body.subarray(0, 9), body.subarray(9)]
    const response = await ingest.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json' }, body: { stream: (async function* () { yield* chunks })() } })
    expect(response?.status).toBe(200)
    await waitFor(() => sink.requests.length === 1, 5000, 'the sink request')
    expect(sink.requests[0]!.events.map((e) => e.id)).toEqual(['fw-bytes-1', 'fw-bytes-2'])
    expect(sink.requests[0]!.events[0]).toMatchObject({ payload: { note: 'ünïcode ✓' } })
    await waitFor(async () => (await ingest.stats()).forwarding!.backlog === 0, 5000, 'an empty backlog')
    expect((await ingest.stats()).forwarded).toBe(2)
  })

  it('retries 503s with backoff until 200, delivering every event once, in acceptance order', async () => {
    const sink = await sinkOf((_request, attempt) => (attempt <= 4 ? { status: 503 } : { status: 200 }))
    const ingest = await core({ url: sink.url, maxBatchEvents: 3 })
    const ids: string[] = []
    for (let i = 0; i < 6; i++) {
      const batch = [makeEvent({ id: `o-${i}-a` }), makeEvent({ id: `o-${i}-b` })]
      ids.push(...batch.map((e) => e.id))
      await ingest.ingest(batch)
    }
    await waitFor(() => sink.storedIds().length >= ids.length, 15_000, 'all events at the sink')
    expect(sink.storedIds()).toEqual(ids)
    const gaps = sink.requests.slice(1, 5).map((r, i) => r.at - sink.requests[i]!.at)
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(9) // at least half the minimum backoff
    // The sink has the events before the forwarder reads its answer: counts settle with the backlog.
    await waitFor(async () => (await ingest.stats()).forwarding!.backlog === 0, 5000, 'an empty backlog')
    const stats = await ingest.stats()
    expect(stats.forwarded).toBe(12)
    expect(stats.failures.forwardByKind['5xx']).toBe(4)
  })

  it('honours Retry-After', async () => {
    const sink = await sinkOf((_r, attempt) => (attempt === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }))
    const ingest = await core({ url: sink.url })
    await ingest.ingest([makeEvent()])
    await waitFor(() => sink.stored.length === 1, 5000, 'delivery')
    expect(sink.requests[1]!.at - sink.requests[0]!.at).toBeGreaterThanOrEqual(950)
  })

  it('times out each attempt on its own when the sink hangs, and retries', async () => {
    let hangs = 3
    const sink = await sinkOf(() => (hangs-- > 0 ? 'hang' : { status: 200 }))
    const ingest = await core({ url: sink.url, timeoutMs: 300 })
    await ingest.ingest([makeEvent({ id: 'slow' })])
    await waitFor(() => sink.stored.length === 1, 10_000, 'delivery after three hung attempts')
    expect(sink.requests).toHaveLength(4)
    // Each attempt got its own full timeout: a reused, already-aborted signal would fail at once.
    for (let i = 1; i < 4; i++) expect(sink.requests[i]!.at - sink.requests[i - 1]!.at).toBeGreaterThanOrEqual(290)
    expect((await ingest.stats()).failures.forwardByKind.timeout).toBe(3)
  })

  it('retries with the same idempotency key when the response is lost after the sink stored the batch', async () => {
    let first = true
    const sink = await sinkOf(() => (first ? ((first = false), 'store-and-destroy') : { status: 200 }))
    const ingest = await core({ url: sink.url, token: 'sink-secret' })
    await ingest.ingest([makeEvent({ id: 'lost-1' }), makeEvent({ id: 'lost-2' })])
    await waitFor(() => sink.requests.length === 2, 5000, 'the retry')
    expect(sink.requests[0]!.key).toMatch(/^[0-9a-f]{32}$/)
    expect(sink.requests[1]!.key).toBe(sink.requests[0]!.key)
    expect(sink.requests[1]!.headers.authorization).toBe('Bearer sink-secret')
    expect(new Set(sink.storedIds())).toEqual(new Set(['lost-1', 'lost-2']))
  })

  it('dead-letters a batch the sink refuses with 400, once, and re-queues it', async () => {
    const sink = await sinkOf(() => ({ status: 400, body: '{"error":"schema mismatch"}' }))
    const ingest = await core({ url: sink.url })
    await ingest.ingest([makeEvent({ id: 'dead-1' })])
    await waitFor(async () => (await ingest.deadLetters()).length === 1, 5000, 'a dead letter')
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(sink.requests).toHaveLength(1)
    const [letter] = await ingest.deadLetters()
    expect(letter).toMatchObject({ status: 400, body: '{"error":"schema mismatch"}', events: 1, attempts: 1 })
    const stats = await ingest.stats()
    expect(stats.failures.forwardByKind.rejected).toBe(1)
    expect(stats.forwarding).toMatchObject({ deadLetters: 1, backlog: 0 })
    sink.set(() => ({ status: 200 }))
    expect(await ingest.requeue()).toBe(1)
    await waitFor(() => sink.stored.length === 1, 5000, 'delivery after re-queue')
    expect(sink.storedIds()).toEqual(['dead-1'])
    expect(await ingest.deadLetters()).toEqual([])
  })

  it('dead-letters only the refused batch of a combined request', async () => {
    let open = false
    const sink = await sinkOf((request) => {
      if (!open) return { status: 503 }
      return request.events.some((e) => e.id === 'bad') ? { status: 422, body: 'bad event' } : { status: 200 }
    })
    const ingest = await core({ url: sink.url })
    await ingest.ingest([makeEvent({ id: 'good-1' })])
    await ingest.ingest([makeEvent({ id: 'bad' })])
    await ingest.ingest([makeEvent({ id: 'good-2' })])
    await waitFor(() => sink.requests.length >= 1, 5000, 'a first attempt')
    open = true
    await waitFor(async () => (await ingest.deadLetters()).length === 1 && sink.storedIds().length === 2, 10_000, 'the good batches delivered and the bad one dead-lettered')
    expect(sink.storedIds().sort()).toEqual(['good-1', 'good-2'])
    const [letter] = await ingest.deadLetters()
    expect(letter).toMatchObject({ status: 422, events: 1 })
    // The refused request combined the bad batch with a good one.
    expect(sink.requests.some((r) => r.events.length >= 2 && r.events.some((e) => e.id === 'bad'))).toBe(true)
  })

  it('retries 408, 425 and 429 but not other 4xx', async () => {
    const statuses = [408, 425, 429, 200]
    const sink = await sinkOf((_r, attempt) => ({ status: statuses[attempt - 1] ?? 200 }))
    const ingest = await core({ url: sink.url })
    await ingest.ingest([makeEvent()])
    await waitFor(() => sink.stored.length === 1, 5000, 'delivery')
    expect(sink.requests).toHaveLength(4)
  })

  it('combines small ingests into one sink request, bounded by events', async () => {
    const sink = await sinkOf(() => 'hang')
    const ingest = await core({ url: sink.url, maxBatchEvents: 5, timeoutMs: 200 })
    for (let i = 0; i < 6; i++) await ingest.ingest([makeEvent({ id: `c-${i}` }), makeEvent({ id: `c-${i}-2` })])
    sink.set(() => ({ status: 200 }))
    await waitFor(() => sink.storedIds().length === 12, 10_000, 'all events')
    for (const request of sink.stored) expect(request.events.length).toBeLessThanOrEqual(5)
    expect(sink.stored.length).toBeLessThan(12)
  })

  it('can make ingest wait for delivery', async () => {
    const sink = await sinkOf((_r, attempt) => (attempt === 1 ? { status: 503 } : { status: 200 }))
    const ingest = await core({ url: sink.url, wait: true })
    await ingest.ingest([makeEvent({ id: 'waited' })])
    expect(sink.storedIds()).toEqual(['waited'])
  })

  it('keeps the outbox across a restart and resumes delivery by itself', async () => {
    const sink = await sinkOf(() => ({ status: 503 }))
    const { createStorage } = await import('unstorage')
    const memory = (await import('unstorage/drivers/memory')).default
    const storage = createStorage({ driver: memory() })
    const first = createEventIngest({ env: {}, storage, sink: { url: sink.url, minBackoffMs: 20, maxBackoffMs: 100 } })
    await first.ingest([makeEvent({ id: 'kept-1' })])
    await first.ingest([makeEvent({ id: 'kept-2' })])
    await waitFor(() => sink.requests.length >= 2, 5000, 'failed attempts')
    await first.close()
    sink.set(() => ({ status: 200 }))
    await core({ url: sink.url }, { storage })
    await waitFor(() => sink.storedIds().length === 2, 5000, 'delivery after restart')
    expect(sink.storedIds()).toEqual(['kept-1', 'kept-2'])
  })

  it('reads EVENT_SINK_URL and EVENT_SINK_TOKEN as defaults', async () => {
    const sink = await sinkOf()
    const ingest = createEventIngest({ env: { EVENT_SINK_URL: sink.url, EVENT_SINK_TOKEN: 't0k' } })
    open.push(ingest)
    await ingest.ingest([makeEvent({ id: 'env-1' })])
    await waitFor(() => sink.stored.length === 1, 5000, 'delivery')
    expect(sink.stored[0]!.headers.authorization).toBe('Bearer t0k')
  })
})

describe('close()', () => {
  it('lets ingests under way finish, refuses new ones with 503, and keeps them stored', async () => {
    const { createStorage, defineDriver } = await import('unstorage')
    const memory = (await import('unstorage/drivers/memory')).default()
    const slow = defineDriver(() => ({
      ...memory,
      name: 'slow',
      async setItem(key: string, value: string) {
        if (key.startsWith('events:b:')) await new Promise((resolve) => setTimeout(resolve, 200))
        return memory.setItem!(key, value, {})
      },
    }))
    const storage = createStorage({ driver: slow() })
    const ingest = createEventIngest({ env: {}, storage })
    await ingest.ready()
    const pending = ingest.ingest([makeEvent({ id: 'during-close' })])
    await new Promise((resolve) => setTimeout(resolve, 20))
    const closing = ingest.close()
    await expect(ingest.ingest([makeEvent()])).rejects.toMatchObject({ status: 503 })
    await expect(pending).resolves.toMatchObject({ accepted: 1 })
    await closing
    const reopened = createEventIngest({ env: {}, storage })
    open.push(reopened)
    await reopened.ready()
    expect(await reopened.log!.get('during-close')).toMatchObject({ id: 'during-close' })
  })
})

describe("a sink's 200 that lists rejected events", () => {
  it('dead-letters the events a downstream event-ingest rejects, with its reasons, and counts the rest delivered', async () => {
    // The downstream checks refunds' payloads; the upstream takes any payload.
    const downstream = await startHost(h3Host, {
      token: 'down-token',
      events: { RefundIssued: { sources: ['api'], payload: z.object({ orderId: z.string(), amount: z.number().positive() }) } },
    })
    open.push(downstream)
    const ingest = await core(
      { url: `${downstream.url}/events/ingest`, token: 'down-token', tokenHeader: 'x-event-token' },
      { events: { RefundIssued: { sources: ['api'] } } },
    )
    const refund = (id: string, amount: number) => makeEvent({ id, name: 'RefundIssued', source: 'api', payload: { orderId: 'o1', amount } })
    await ingest.ingest([refund('refund-ok', 5), refund('refund-zero', 0), makeEvent({ id: 'view-1' }), refund('refund-neg', -2)])
    await waitFor(async () => (await ingest.deadLetters()).length === 1, 5000, 'a dead letter')
    expect((await downstream.ingest.events()).events.map((e) => e.id).sort()).toEqual(['refund-ok', 'view-1'])
    const [letter] = await ingest.deadLetters()
    expect(letter).toMatchObject({
      status: 200,
      events: 2,
      attempts: 1,
      rejected: [
        { index: 1, id: 'refund-zero', errors: [{ path: 'payload.amount', message: 'payload.amount: must be greater than 0, got 0' }] },
        { index: 3, id: 'refund-neg', errors: [{ path: 'payload.amount', message: 'payload.amount: must be greater than 0, got -2' }] },
      ],
    })
    await waitFor(async () => (await ingest.stats()).forwarding!.backlog === 0, 5000, 'an empty backlog')
    const stats = await ingest.stats()
    expect(stats.forwarded).toBe(2)
    expect(stats.failures.forwardByKind.partial).toBe(1)
    expect(stats.forwarding).toMatchObject({ deadLetters: 1, backlog: 0 })
  })

  it('places rejected events of a combined request in their own batches, and requeues only them', async () => {
    let open503 = true
    let refuse = true
    const sink = await sinkOf((request) => {
      if (open503) return { status: 503 }
      const rejected = refuse
        ? request.events.flatMap((e, index) => (String(e.id).startsWith('bad') ? [{ index, id: e.id, errors: [{ path: 'payload', message: `payload: no ${e.id}` }] }] : []))
        : []
      return { status: 200, body: JSON.stringify({ accepted: request.events.length - rejected.length, duplicates: 0, rejected }) }
    })
    // Three batches left in the outbox by a first run: the next one sends them in one request.
    const { createStorage } = await import('unstorage')
    const memory = (await import('unstorage/drivers/memory')).default
    const storage = createStorage({ driver: memory() })
    const first = createEventIngest({ env: {}, storage, sink: { url: sink.url, minBackoffMs: 20, maxBackoffMs: 100 } })
    await first.ingest([makeEvent({ id: 'a-1' }), makeEvent({ id: 'bad-a' })])
    await first.ingest([makeEvent({ id: 'b-1' })])
    await first.ingest([makeEvent({ id: 'bad-c1' }), makeEvent({ id: 'c-2' }), makeEvent({ id: 'bad-c3' })])
    await waitFor(() => sink.requests.length >= 1, 5000, 'a first attempt')
    await first.close()
    open503 = false
    const ingest = await core({ url: sink.url }, { storage })
    await waitFor(async () => (await ingest.deadLetters()).length === 2, 10_000, 'two dead letters')
    // One request carried all three batches: positions in it are not positions in a batch.
    expect(sink.stored).toHaveLength(1)
    expect(sink.stored[0]!.events.map((e) => e.id)).toEqual(['a-1', 'bad-a', 'b-1', 'bad-c1', 'c-2', 'bad-c3'])
    const letters = await ingest.deadLetters()
    expect(letters.map((l) => ({ events: l.events, rejected: l.rejected }))).toEqual([
      { events: 1, rejected: [{ index: 1, id: 'bad-a', errors: [{ path: 'payload', message: 'payload: no bad-a' }] }] },
      {
        events: 2,
        rejected: [
          { index: 0, id: 'bad-c1', errors: [{ path: 'payload', message: 'payload: no bad-c1' }] },
          { index: 2, id: 'bad-c3', errors: [{ path: 'payload', message: 'payload: no bad-c3' }] },
        ],
      },
    ])
    await waitFor(async () => (await ingest.stats()).forwarding!.backlog === 0, 5000, 'an empty backlog')
    expect((await ingest.stats()).forwarded).toBe(3)
    expect((await ingest.stats()).forwarding).toMatchObject({ deadLetters: 2 })

    refuse = false
    expect(await ingest.requeue([letters[1]!.id])).toBe(1)
    await waitFor(() => sink.stored.length === 2, 5000, 'the requeued events delivered')
    expect(sink.stored[1]!.events.map((e) => e.id)).toEqual(['bad-c1', 'bad-c3'])
    expect((await ingest.deadLetters()).map((l) => l.id)).toEqual([letters[0]!.id])
    await waitFor(async () => (await ingest.stats()).forwarded === 5, 5000, 'the requeued events counted')
    expect((await ingest.stats()).forwarding).toMatchObject({ deadLetters: 1, backlog: 0 })
  })

  it('keeps a requeued part of a batch a part across a restart', async () => {
    const sink = await sinkOf((request) => ({
      status: 200,
      body: JSON.stringify({ rejected: request.events.flatMap((e, index) => (e.id === 'part-bad' ? [{ index, errors: ['no'] }] : [])) }),
    }))
    const { createStorage } = await import('unstorage')
    const memory = (await import('unstorage/drivers/memory')).default
    const storage = createStorage({ driver: memory() })
    const first = createEventIngest({ env: {}, storage, sink: { url: sink.url, minBackoffMs: 20, maxBackoffMs: 100 } })
    await first.ingest([makeEvent({ id: 'part-ok' }), makeEvent({ id: 'part-bad' })])
    await waitFor(async () => (await first.deadLetters()).length === 1, 5000, 'a dead letter')
    expect((await first.deadLetters())[0]!.rejected).toEqual([{ index: 1, id: 'part-bad', errors: ['no'] }])
    sink.set(() => ({ status: 503 }))
    await first.requeue()
    await waitFor(() => sink.requests.length >= 2, 5000, 'a failed attempt')
    await first.close()
    sink.set(() => ({ status: 200 }))
    await core({ url: sink.url }, { storage })
    await waitFor(() => sink.stored.length === 2, 5000, 'delivery after restart')
    expect(sink.stored[1]!.events.map((e) => e.id)).toEqual(['part-bad'])
  })

  it('counts every event delivered when the 200 lists none, or says nothing readable', async () => {
    const answers = ['{"accepted":1,"duplicates":0,"rejected":[]}', 'ok', '{"rejected":[{"index":7},{"id":"nobody"},null]}']
    const sink = await sinkOf((_r, attempt) => ({ status: 200, body: answers[attempt - 1] ?? '{}' }))
    const ingest = await core({ url: sink.url })
    for (const id of ['n-1', 'n-2', 'n-3']) {
      await ingest.ingest([makeEvent({ id })])
      await waitFor(() => sink.stored.some((r) => r.events[0]!.id === id), 5000, `delivery of ${id}`)
    }
    await waitFor(async () => (await ingest.stats()).forwarded === 3, 5000, 'three delivered')
    expect(await ingest.deadLetters()).toEqual([])
  })
})

describe('timestamps at the edge of years 0000-9999, through two event-ingests', () => {
  it('refuses the ones outside over HTTP naming occurredAt, and forwards the edge ones, which the downstream accepts', async () => {
    const downstream = await startHost(h3Host, {})
    open.push(downstream)
    const upstream = await startHost(h3Host, { sink: { url: `${downstream.url}/events/ingest`, minBackoffMs: 20, maxBackoffMs: 100 } })
    open.push(upstream)
    const events = [
      makeEvent({ id: 'edge-first', occurredAt: '0000-01-01T00:00:00Z' }),
      makeEvent({ id: 'edge-before', occurredAt: '0000-01-01T00:30:00+01:00' }),
      makeEvent({ id: 'edge-last', occurredAt: '9999-12-31T23:59:59.999Z' }),
      makeEvent({ id: 'edge-after', occurredAt: '9999-12-31T23:30:00-01:00' }),
    ]
    const response = await postEvents(upstream.url, events)
    expect(response.status).toBe(200)
    expect(response.body.accepted).toBe(2)
    expect(response.body.rejected.map((r: { index: number; id: string; errors: { path: string; message: string }[] }) => [r.index, r.id, r.errors.map((e) => e.path)])).toEqual([
      [1, 'edge-before', ['occurredAt']],
      [3, 'edge-after', ['occurredAt']],
    ])
    expect(response.body.rejected[0].errors[0].message).toMatch(/^occurredAt: must fall in years 0000-9999 once in UTC .*-000001-12-31T23:30:00\.000Z$/)
    await waitFor(async () => (await downstream.ingest.events()).events.length === 2, 5000, 'the edge events downstream')
    expect((await downstream.ingest.events()).events.map((e) => [e.id, e.occurredAt]).sort()).toEqual([
      ['edge-first', '0000-01-01T00:00:00.000Z'],
      ['edge-last', '9999-12-31T23:59:59.999Z'],
    ])
    await waitFor(async () => (await upstream.ingest.stats()).forwarded === 2, 5000, 'two forwarded')
    expect(await upstream.ingest.deadLetters()).toEqual([])
  })
})

describe('forwarding as a CloudEvents batch (sink.format: cloudevents)', () => {
  const ceOf = (id: string, fields: Record<string, unknown> = {}) => ({
    specversion: '1.0', id, type: 'ProductViewed', source: 'https://shop.example/storefront', time: '2026-11-02T14:03:11.000Z', data: { productId: id }, ...fields,
  })

  it('posts every event of many ingests as application/cloudevents-batch+json, with the same idempotency key on a retry', async () => {
    const sink = await sinkOf((_r, attempt) => (attempt === 1 ? { status: 503 } : { status: 200 }))
    const host = await startHost(h3Host, { sink: { url: sink.url, format: 'cloudevents', minBackoffMs: 20, maxBackoffMs: 200 } })
    open.push(host)
    const received = Array.from({ length: 60 }, (_, i) => ceOf(`ce-fw-${i}`, i === 0 ? { subject: 'sku-1', traceparent: '00-ab-cd-01', companyid: 'co_1' } : {}))
    const res = await postEvents(host.url, received, { 'content-type': 'application/cloudevents-batch+json' })
    expect(res.body).toEqual({ accepted: 60, duplicates: 0, rejected: [] })
    const envelopes = Array.from({ length: 40 }, (_, i) => makeEvent({ id: `env-fw-${i}`, name: 'OrderCreated', source: 'api', companyId: 'co_2', payload: { orderId: `o${i}` } }))
    await host.ingest.ingest(envelopes)
    await waitFor(() => sink.storedIds().length === 100, 10_000, 'all 100 events at the sink')
    expect(sink.storedIds().sort()).toEqual([...received.map((e) => e.id), ...envelopes.map((e) => e.id)].sort())
    for (const request of sink.requests) expect(request.headers['content-type']).toBe('application/cloudevents-batch+json')
    expect(sink.requests[1]!.key).toBe(sink.requests[0]!.key)
    const all = sink.stored.flatMap((r) => r.events) as Record<string, unknown>[]
    // Received as CloudEvents: their source and attributes come back as sent.
    expect(all.find((e) => e.id === 'ce-fw-0')).toEqual({
      specversion: '1.0', id: 'ce-fw-0', type: 'ProductViewed', source: 'https://shop.example/storefront', subject: 'sku-1', traceparent: '00-ab-cd-01',
      time: '2026-11-02T14:03:11.000Z', datacontenttype: 'application/json', schemaversion: 1, companyid: 'co_1', data: { productId: 'ce-fw-0' },
    })
    // Received as envelopes: source /<source>.
    expect(all.find((e) => e.id === 'env-fw-7')).toEqual({
      specversion: '1.0', id: 'env-fw-7', type: 'OrderCreated', source: '/api', time: envelopes[7]!.occurredAt, datacontenttype: 'application/json',
      schemaversion: 1, companyid: 'co_2', data: { orderId: 'o7' },
    })
    await waitFor(async () => (await host.ingest.stats()).forwarded === 100, 5000, 'every event counted forwarded')
  })

  it('feeds a downstream event-ingest, which reads the CloudEvents batch back into the same envelopes', async () => {
    const downstream = await startHost(h3Host, { adminToken: 'down' })
    open.push(downstream)
    const upstream = await core({ url: `${downstream.url}/events/ingest`, format: 'cloudevents', maxBatchEvents: 1000 })
    const events = Array.from({ length: 50 }, (_, i) => makeEvent({ id: `chain-${i}`, subjectId: `u${i}` }))
    await upstream.ingest(events)
    await waitFor(async () => (await upstream.stats()).forwarded === 50, 10_000, 'fifty forwarded')
    const stored = (await downstream.ingest.events({ limit: 100 })).events
    expect(stored.map((e) => e.id).sort()).toEqual(events.map((e) => e.id).sort())
    for (const event of events) {
      expect(stored.find((e) => e.id === event.id)).toMatchObject({ name: event.name, source: event.source, occurredAt: event.occurredAt, subjectId: event.subjectId, payload: event.payload })
    }
    expect(await upstream.deadLetters()).toEqual([])
  })

  it('dead-letters the CloudEvents a downstream event-ingest rejects, by their index, with errors naming attributes', async () => {
    const downstream = await startHost(h3Host, { events: { RefundIssued: { sources: ['api'], payload: z.object({ orderId: z.string(), amount: z.number().positive() }) } } })
    open.push(downstream)
    const ingest = await core({ url: `${downstream.url}/events/ingest`, format: 'cloudevents' }, { events: { RefundIssued: { sources: ['api'] } } })
    const refund = (id: string, amount: number) => makeEvent({ id, name: 'RefundIssued', source: 'api', payload: { orderId: 'o1', amount } })
    await ingest.ingest([refund('ce-refund-ok', 5), refund('ce-refund-zero', 0), makeEvent({ id: 'ce-view-1' })])
    await waitFor(async () => (await ingest.deadLetters()).length === 1, 5000, 'a dead letter')
    expect((await downstream.ingest.events()).events.map((e) => e.id).sort()).toEqual(['ce-refund-ok', 'ce-view-1'])
    const [letter] = await ingest.deadLetters()
    expect(letter).toMatchObject({ status: 200, rejected: [{ index: 1, id: 'ce-refund-zero', errors: [{ path: 'data.amount', message: 'data.amount: must be greater than 0, got 0' }] }] })
    await waitFor(async () => (await ingest.stats()).forwarded === 2, 5000, 'two forwarded')
  })

  it('takes the CloudEvents source from sink.cloudEventsSource, and the default where it throws', async () => {
    const sink = await sinkOf(() => ({ status: 200 }))
    const ingest = await core({ url: sink.url, format: 'cloudevents', cloudEventsSource: (event) => {
      if (event.id === 'src-throws') throw new Error('no source')
      return `urn:shop:${String(event.source)}`
    } })
    await ingest.ingest([makeEvent({ id: 'src-1' }), makeEvent({ id: 'src-throws' })])
    await waitFor(() => sink.storedIds().length === 2, 5000, 'both events')
    expect(sink.stored.flatMap((r) => r.events).map((e) => [e.id, e.source])).toEqual([['src-1', 'urn:shop:storefront'], ['src-throws', '/storefront']])
  })

  it('sends envelopes as application/json by default, and refuses a bad format or source naming the option', async () => {
    const sink = await sinkOf(() => ({ status: 200 }))
    const ingest = await core({ url: sink.url })
    await ingest.ingest([makeEvent({ id: 'plain-1' })])
    await waitFor(() => sink.storedIds().length === 1, 5000, 'the event')
    expect(sink.requests[0]!.headers['content-type']).toBe('application/json')
    expect(sink.requests[0]!.events[0]).toMatchObject({ id: 'plain-1', name: 'ProductViewed' })
    expect(() => createEventIngest({ env: {}, sink: { url: sink.url, format: 'xml' as never } })).toThrow("[event-ingest] sink.format must be 'envelope' or 'cloudevents', got \"xml\"")
    expect(() => createEventIngest({ env: {}, sink: { url: sink.url, cloudEventsSource: '/x' as never } })).toThrow('[event-ingest] sink.cloudEventsSource must be a function, got "/x"')
  })
})
