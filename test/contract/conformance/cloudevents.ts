import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { gzipSync } from 'node:zlib'
import { z } from 'zod'
import { getJson, postEvents, rawRequest } from '../../helpers/http'
import { startHost, type HostFactory, type RunningHost } from '../../helpers/servers'

const ADMIN = 'admin-secret-token'
const STRUCTURED = 'application/cloudevents+json; charset=utf-8'
const BATCHED = 'application/cloudevents-batch+json'

let sequence = 0
/** A fresh valid CloudEvent, with attributes overridden (`undefined` removes one). */
export function makeCloudEvent(overrides: Record<string, unknown> = {}): Record<string, any> {
  const event: Record<string, unknown> = {
    specversion: '1.0',
    id: `ce_${process.pid}_${Date.now().toString(36)}_${sequence++}`,
    type: 'ProductViewed',
    source: '/storefront',
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data: { productId: 'prod_1' },
    ...overrides,
  }
  for (const key of Object.keys(event)) if (event[key] === undefined) delete event[key]
  return event
}

/**
 * CloudEvents on the ingest route, over real HTTP on one host: the structured and batched modes
 * of the HTTP binding, mapped to the envelope, with the same limits, dedupe and per-event results.
 */
export function defineCloudEventsSuite(factory: HostFactory, label: string) {
  describe(`${label}: CloudEvents`, () => {
    let host: RunningHost
    const admin = { authorization: `Bearer ${ADMIN}` }
    beforeAll(async () => {
      host = await startHost(factory, {
        adminToken: ADMIN,
        limits: { maxEvents: 50, maxEventBytes: 512, maxDepth: 6 },
        events: { RefundIssued: { sources: ['api', 'admin'], payload: z.object({ orderId: z.string(), amount: z.number() }) } },
      }, '/api')
    })
    afterAll(() => host.close())
    const stored = async () => (await getJson(`${host.url}/admin/events?limit=1000`, admin)).body.events as Record<string, any>[]

    it('publishes the CloudEvents content types in GET /events/schema', async () => {
      const schema = (await getJson(`${host.url}/events/schema`)).body
      expect(schema.contentTypes).toEqual(['application/json', 'text/plain', 'application/cloudevents+json', 'application/cloudevents-batch+json'])
    })

    it('accepts one CloudEvent in structured mode and stores it as an envelope', async () => {
      const event = makeCloudEvent({ companyid: 'co_1', subject: 'prod_1', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' })
      const res = await postEvents(host.url, event, { 'content-type': STRUCTURED })
      expect(res.status).toBe(200)
      expect(res.body).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      const record = (await stored()).find((e) => e.id === event.id)!
      expect(record).toMatchObject({
        id: event.id, name: 'ProductViewed', schemaVersion: 1, occurredAt: event.time, source: 'storefront', companyId: 'co_1',
        payload: { productId: 'prod_1' },
        cloudEvent: { source: '/storefront', subject: 'prod_1', traceparent: event.traceparent },
      })
      for (const attribute of ['specversion', 'type', 'time', 'data', 'datacontenttype', 'companyid']) expect(record, attribute).not.toHaveProperty(attribute)
    })

    it('accepts a batch of 50 CloudEvents in batched mode: every one stored, and each a duplicate when sent again', async () => {
      const batch = Array.from({ length: 50 }, (_, i) => makeCloudEvent({ id: `ce-many-${i}`, data: { productId: `prod_${i}` } }))
      const res = await postEvents(host.url, batch, { 'content-type': BATCHED })
      expect(res.body).toEqual({ accepted: 50, duplicates: 0, rejected: [] })
      const records = (await stored()).filter((e) => e.id.startsWith('ce-many-'))
      expect(records.map((e) => e.id).sort()).toEqual(batch.map((e) => e.id).sort())
      for (const record of records) expect(record.payload).toEqual({ productId: `prod_${record.id.slice('ce-many-'.length)}` })
      const again = await postEvents(host.url, batch, { 'content-type': BATCHED })
      expect(again.body).toEqual({ accepted: 0, duplicates: 50, rejected: [] })
      expect((await stored()).filter((e) => e.id.startsWith('ce-many-'))).toHaveLength(50)
    })

    it('shares ids with envelopes: an event stored from a CloudEvent is a duplicate as an envelope', async () => {
      const event = makeCloudEvent()
      expect((await postEvents(host.url, [event], { 'content-type': BATCHED })).body).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      const envelope = { id: event.id, name: 'ProductViewed', schemaVersion: 1, occurredAt: event.time, source: 'storefront', payload: event.data }
      expect((await postEvents(host.url, [envelope])).body).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
    })

    it('rejects each invalid CloudEvent naming its attribute, at its index, and stores the others', async () => {
      const batch = [
        makeCloudEvent({ id: 'ce-ok-0' }),
        makeCloudEvent({ id: 'ce-bad-type', type: 'NoSuchEvent' }),
        makeCloudEvent({ id: 'ce-bad-time', time: undefined }),
        makeCloudEvent({ id: 'ce-bad-data', type: 'RefundIssued', source: '/api', data: { orderId: 'o1', amount: 'ten' } }),
        makeCloudEvent({ id: 'ce-bad-version', specversion: '0.3' }),
        makeCloudEvent({ id: 'ce-bad-source', source: 'https://shop.example/warehouse' }),
        makeCloudEvent({ id: 'ce-bad-binary', data: undefined, data_base64: 'AAEC' }),
        makeCloudEvent({ id: 'ce-bad-when', time: 'yesterday' }),
        makeCloudEvent({ id: 'ce-bad-expected', source: '/bot' }),
        makeCloudEvent({ id: 'ce-ok-9', type: 'RefundIssued', source: 'https://shop.example/api', data: { orderId: 'o1', amount: 10 } }),
      ]
      const res = await postEvents(host.url, batch, { 'content-type': BATCHED })
      expect(res.status).toBe(200)
      expect(res.body.accepted).toBe(2)
      const paths = res.body.rejected.map((r: any) => [r.index, r.id, r.errors.map((e: any) => e.path)])
      expect(paths).toEqual([
        [1, 'ce-bad-type', ['type']],
        [2, 'ce-bad-time', ['time']],
        [3, 'ce-bad-data', ['data.amount']],
        [4, 'ce-bad-version', ['specversion']],
        [5, 'ce-bad-source', ['source']],
        [6, 'ce-bad-binary', ['data_base64']],
        [7, 'ce-bad-when', ['time']],
        [8, 'ce-bad-expected', ['source']],
      ])
      const messages = res.body.rejected.map((r: any) => r.errors[0].message)
      expect(messages[0]).toMatch(/^type: unknown event name "NoSuchEvent"/)
      expect(messages[1]).toBe("time: is required: it is the envelope's occurredAt")
      expect(messages[2]).toBe('data.amount: expected a number, got "ten"')
      expect(messages[3]).toBe('specversion: expected "1.0", got "0.3"')
      expect(messages[4]).toMatch(/^source: "https:\/\/shop.example\/warehouse" maps to none of the sources/)
      expect(messages[6]).toMatch(/^time: expected an ISO 8601 timestamp/)
      expect(messages[7]).toBe('source: ProductViewed is expected from storefront, got "bot" (mapped from "/bot")')
      const ids = (await stored()).map((e) => e.id)
      expect(ids).toEqual(expect.arrayContaining(['ce-ok-0', 'ce-ok-9']))
      expect(ids.filter((id) => id.startsWith('ce-bad-'))).toEqual([])
      const stats = (await getJson(`${host.url}/admin/events/stats`, admin)).body
      expect(stats.totals.rejected).toBeGreaterThanOrEqual(8)
    })

    it('rejects a CloudEvent of another specversion, alone, with 200 naming specversion', async () => {
      const res = await postEvents(host.url, makeCloudEvent({ id: 'ce-v2', specversion: '2.0' }), { 'content-type': STRUCTURED })
      expect(res.status).toBe(200)
      expect(res.body).toEqual({ accepted: 0, duplicates: 0, rejected: [{ index: 0, id: 'ce-v2', errors: [{ path: 'specversion', message: 'specversion: expected "1.0", got "2.0"' }] }] })
    })

    it('refuses a structured body that is not one object, and a batched body that is not an array', async () => {
      const two = await postEvents(host.url, [makeCloudEvent()], { 'content-type': STRUCTURED })
      expect(two.status).toBe(400)
      expect(two.body).toMatchObject({ code: 'invalid_json', message: expect.stringMatching(/must be one CloudEvent \(a JSON object\), got an array; send several as application\/cloudevents-batch\+json/) })
      const one = await postEvents(host.url, makeCloudEvent(), { 'content-type': BATCHED })
      expect(one.status).toBe(400)
      expect(one.body.code).toBe('not_an_array')
      const broken = await postEvents(host.url, '{"specversion":', { 'content-type': STRUCTURED })
      expect(broken.status).toBe(400)
      expect(broken.body.code).toBe('invalid_json')
    })

    it('holds a structured CloudEvent to maxEventBytes at its value and one over', async () => {
      const sized = (bytes: number, id: string) => {
        const event = makeCloudEvent({ id, data: { productId: 'p', pad: '' } })
        event.data.pad = 'x'.repeat(bytes - Buffer.byteLength(JSON.stringify(event)))
        return JSON.stringify(event)
      }
      const at = sized(512, 'ce-size-at')
      expect(Buffer.byteLength(at)).toBe(512)
      expect((await postEvents(host.url, at, { 'content-type': STRUCTURED })).body).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      const over = await postEvents(host.url, sized(513, 'ce-size-over'), { 'content-type': STRUCTURED })
      expect(over.status).toBe(413)
      expect(over.body).toMatchObject({ code: 'event_too_large', limit: 'maxEventBytes', value: 512, index: 0, id: 'ce-size-over' })
    })

    it('holds a structured CloudEvent to maxDepth at its value and one over, the event at level 2 as in a batch', async () => {
      // Array 1, event 2, data 3, the value of a 4, of b 5, of c 6.
      const at = await postEvents(host.url, makeCloudEvent({ id: 'ce-depth-at', data: { a: { b: { c: { d: 1 } } } } }), { 'content-type': STRUCTURED })
      expect(at.body).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      const over = await postEvents(host.url, makeCloudEvent({ id: 'ce-depth-over', data: { a: { b: { c: { d: { e: 1 } } } } } }), { 'content-type': STRUCTURED })
      expect(over.status).toBe(400)
      expect(over.body).toMatchObject({ code: 'too_deep', limit: 'maxDepth', value: 6 })
    })

    it('decodes a gzip batch of CloudEvents', async () => {
      const batch = Array.from({ length: 20 }, (_, i) => makeCloudEvent({ id: `ce-gzip-${i}` }))
      const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': BATCHED, 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify(batch)) })
      expect(res.status).toBe(200)
      expect(res.json).toEqual({ accepted: 20, duplicates: 0, rejected: [] })
    })

    it('holds a batch of CloudEvents to maxEvents at its value and one over', async () => {
      const batch = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => makeCloudEvent({ id: `${prefix}-${i}` }))
      expect((await postEvents(host.url, batch(50, 'ce-count-at'), { 'content-type': BATCHED })).body.accepted).toBe(50)
      const over = await postEvents(host.url, batch(51, 'ce-count-over'), { 'content-type': BATCHED })
      expect(over.status).toBe(413)
      expect(over.body).toMatchObject({ code: 'too_many_events', limit: 'maxEvents', value: 50 })
    })
  })
}
