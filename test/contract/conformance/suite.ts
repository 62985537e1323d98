import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createStorage, defineDriver } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { makeEvent } from '../../helpers/fixtures'
import { routes } from '../../../src/index'
import { request as httpRequest } from 'node:http'
import { busyClientUpload, getJson, postEvents, rawRequest, slowUpload } from '../../helpers/http'
import { startHost, type HostFactory, type RunningHost } from '../../helpers/servers'
import { defineCloudEventsSuite } from './cloudevents'
import { defineMetricsSuite } from './metrics'
import { defineReplaySuite } from './replay'
import { startSink, waitFor } from '../../helpers/sink'
import { createHmac } from 'node:crypto'
import { createEventModel } from '../../../src/index'
import Redis from 'ioredis'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../../helpers/redis'

const ADMIN = 'admin-secret-token'

/**
 * Other spellings of `path` that some router or proxy might take for it: a letter or a slash
 * percent-encoded, `.` and `..` segments (plain and encoded), doubled slashes, other letter cases
 * and a trailing slash. None of them is the route.
 */
export function spellingsOf(path: string): string[] {
  const segments = path.split('/').slice(1)
  const join = (parts: string[]) => `/${parts.join('/')}`
  const hex = (c: string) => c.charCodeAt(0).toString(16)
  const spellings = new Set<string>()
  segments.forEach((segment, i) => {
    const with_ = (replacement: string) => join([...segments.slice(0, i), replacement, ...segments.slice(i + 1)])
    const before = (inserted: string) => join([...segments.slice(0, i), inserted, ...segments.slice(i)])
    spellings.add(with_(`%${hex(segment[0]!)}${segment.slice(1)}`))
    spellings.add(with_(`%${hex(segment[0]!).toUpperCase()}${segment.slice(1)}`))
    spellings.add(with_(segment.toUpperCase()))
    spellings.add(with_(segment[0]!.toUpperCase() + segment.slice(1)))
    spellings.add(before('.'))
    spellings.add(before('%2e'))
    spellings.add(before('x/..'))
    spellings.add(before('x/%2e%2e'))
    spellings.add(before('x/%2E%2E'))
    spellings.add(join([...segments.slice(0, i), '', ...segments.slice(i)]))
    if (i > 0) {
      spellings.add(`${join(segments.slice(0, i))}%2F${segments.slice(i).join('/')}`)
      spellings.add(`${join(segments.slice(0, i))}%2f${segments.slice(i).join('/')}`)
    }
  })
  spellings.add(`${path}/`)
  spellings.add(`${path}//`)
  spellings.add(`${path}/.`)
  spellings.add(`/${path}`)
  // Path parameters and backslashes, which some routers and proxies strip or turn into slashes.
  spellings.add(`${path};x`)
  spellings.add(`${path};`)
  spellings.add(path.replace(/\/([^/]*)$/, '\\$1'))
  spellings.delete(path)
  return [...spellings]
}

/**
 * The HTTP contract, run against one host framework over real loopback HTTP. Every adapter
 * calls this with its own factory, so each gets the whole contract.
 */
export function defineConformanceSuite(factory: HostFactory, variant = '') {
  const label = variant ? `${factory.name} (${variant})` : factory.name

  describe(`${label}: ingest`, () => {
    let host: RunningHost
    beforeAll(async () => {
      host = await startHost(factory, { adminToken: ADMIN, limits: { maxBodyBytes: 4096, maxEvents: 5, maxEventBytes: 1024, maxDepth: 8 } }, '/api')
    })
    afterAll(() => host.close())

    it('accepts a valid batch with 200 and stores it', async () => {
      const events = [makeEvent({ id: 'ok-1' }), makeEvent({ id: 'ok-2', name: 'OrderCreated', source: 'api' })]
      const res = await postEvents(host.url, events)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^application\/json/)
      expect(res.body).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
      // The usual 200 is written from a template: it carries every field the core's result has.
      const direct = await host.ingest.ingest([makeEvent({ id: 'ok-direct' })])
      expect(Object.keys(res.body)).toEqual(Object.keys(direct))
      const stored = await getJson(`${host.url}/admin/events?limit=10`, { authorization: `Bearer ${ADMIN}` })
      expect(stored.body.events.map((e: any) => e.id)).toEqual(expect.arrayContaining(['ok-1', 'ok-2']))
    })

    it('stores the valid events of a mixed batch and reports each invalid one', async () => {
      const res = await postEvents(host.url, [makeEvent({ id: 'mix-1' }), makeEvent({ id: 'mix-bad', occurredAt: 'yesterday' }), 7])
      expect(res.status).toBe(200)
      expect(res.body.accepted).toBe(1)
      expect(res.body.rejected).toEqual([
        { index: 1, id: 'mix-bad', errors: [{ path: 'occurredAt', message: expect.stringContaining('got "yesterday"') }] },
        { index: 2, errors: [{ path: '', message: 'an event must be a JSON object, got 7' }] },
      ])
    })

    it('accepts text/plain carrying JSON (browser beacons)', async () => {
      const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: JSON.stringify([makeEvent()]) })
      expect(res.status).toBe(200)
      expect(res.json.accepted).toBe(1)
    })

    it('refuses other content types with 415', async () => {
      for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
        const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': type }, body: '[]' })
        expect(res.status).toBe(415)
        expect(res.json.code).toBe('unsupported_media_type')
        expect(res.json.message).toMatch(/^content-type /)
      }
    })

    it('refuses malformed content types with 415 in the contract format', async () => {
      for (const type of [' ', '/', 'x', 'application/', ';', 'application/json/x', '; charset=utf-8']) {
        const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': type }, body: '[]' })
        expect(res.status, JSON.stringify(type)).toBe(415)
        expect(res.json, JSON.stringify(type)).toMatchObject({ code: 'unsupported_media_type', message: expect.stringMatching(/^content-type /) })
      }
    })

    it('refuses malformed JSON, a non-array body and an empty body with 400', async () => {
      const bad = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: '[{"id":' })
      expect(bad.status).toBe(400)
      expect(bad.json.code).toBe('invalid_json')
      const object = await postEvents(host.url, '{"events":[]}')
      expect(object.status).toBe(400)
      expect(object.body).toMatchObject({ code: 'not_an_array', message: 'body must be a JSON array of events, got an object' })
      const empty = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: '' })
      expect(empty.status).toBe(400)
    })

    it('refuses nesting over maxDepth with 400 naming the limit, and accepts it at the limit', async () => {
      const nest = (levels: number): unknown => (levels === 0 ? 1 : { n: nest(levels - 1) })
      const atLimit = await postEvents(host.url, [makeEvent({ payload: nest(6) })]) // 1 + 1 + 6 = 8
      expect(atLimit.status).toBe(200)
      const over = await postEvents(host.url, [makeEvent({ payload: nest(7) })])
      expect(over.status).toBe(400)
      expect(over.body).toMatchObject({ code: 'too_deep', limit: 'maxDepth', value: 8 })
    })

    it('refuses more than maxEvents events with 413 naming the limit, and accepts exactly maxEvents', async () => {
      const five = await postEvents(host.url, Array.from({ length: 5 }, () => makeEvent({ payload: {} })))
      expect(five.status).toBe(200)
      expect(five.body.accepted).toBe(5)
      const six = await postEvents(host.url, Array.from({ length: 6 }, () => makeEvent({ payload: {} })))
      expect(six.status).toBe(413)
      expect(six.body).toMatchObject({ code: 'too_many_events', limit: 'maxEvents', value: 5 })
    })

    it('refuses an event over maxEventBytes with 413 naming the limit, index and id', async () => {
      const base = makeEvent({ id: 'big', payload: { pad: '' } })
      const size = Buffer.byteLength(JSON.stringify(base))
      const exact = { ...base, payload: { pad: 'x'.repeat(1024 - size) } }
      const ok = await postEvents(host.url, [exact])
      expect(ok.status).toBe(200)
      const over = { ...base, id: 'big-2', payload: { pad: 'x'.repeat(1025 - size) } }
      const res = await postEvents(host.url, [makeEvent(), over])
      expect(res.status).toBe(413)
      expect(res.body).toMatchObject({ code: 'event_too_large', limit: 'maxEventBytes', value: 1024, index: 1, id: 'big-2' })
      // Alone in its body: the body is then one byte over what can hold only events within the limit.
      const alone = await postEvents(host.url, [{ ...over, id: 'big-3' }])
      expect(alone.status).toBe(413)
      expect(alone.body).toMatchObject({ code: 'event_too_large', limit: 'maxEventBytes', value: 1024, index: 0, id: 'big-3' })
    })

    // A body of exactly `size` bytes made of real events (no whitespace padding), so that its size
    // is the same whether measured raw or, after a host parser, re-serialised.
    const bodyOfSize = (size: number) => {
      const events = Array.from({ length: 5 }, (_, i) => makeEvent({ id: `size-${size}-${i}-${Math.random()}`, payload: { pad: '' } }))
      const overhead = Buffer.byteLength(JSON.stringify(events))
      const share = Math.floor((size - overhead) / 5)
      events.forEach((event, i) => (event.payload.pad = 'x'.repeat(i === 4 ? size - overhead - share * 4 : share)))
      const body = JSON.stringify(events)
      expect(Buffer.byteLength(body)).toBe(size)
      return body
    }

    it('takes a body of exactly maxBodyBytes and refuses one byte more (Content-Length)', async () => {
      const ok = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: bodyOfSize(4096) })
      expect(ok.status).toBe(200)
      expect(ok.json.accepted).toBe(5)
      const over = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: bodyOfSize(4097) })
      expect(over.status).toBe(413)
      expect(over.json).toMatchObject({ code: 'body_too_large', limit: 'maxBodyBytes', value: 4096 })
    })

    it('refuses a chunked body as soon as it crosses maxBodyBytes', async () => {
      const exact = bodyOfSize(4096)
      const ok = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, chunks: [exact.slice(0, 1000), exact.slice(1000)] })
      expect(ok.status).toBe(200)
      const over = bodyOfSize(4097)
      const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, chunks: [over.slice(0, 1000), over.slice(1000)] })
      expect(res.status).toBe(413)
      expect(res.json.code).toBe('body_too_large')
    })

    it('answers a wrong method on a known route with 405 and Allow', async () => {
      const res = await rawRequest(`${host.url}/events/ingest`, { method: 'GET' })
      expect(res.status).toBe(405)
      expect(res.headers.allow).toContain('POST')
      expect(res.json.code).toBe('method_not_allowed')
    })

    it('reports duplicates: the same batch sent twice is stored once', async () => {
      const events = [makeEvent({ id: 'dup-a' }), makeEvent({ id: 'dup-b' })]
      expect((await postEvents(host.url, events)).body).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
      expect((await postEvents(host.url, events)).body).toEqual({ accepted: 0, duplicates: 2, rejected: [] })
      expect((await postEvents(host.url, [makeEvent({ id: 'dup-c' }), makeEvent({ id: 'dup-c' })])).body).toEqual({ accepted: 1, duplicates: 1, rejected: [] })
    })

    it('stores one copy when 20 concurrent requests carry one id', async () => {
      const event = makeEvent({ id: 'race-1' })
      const results = await Promise.all(Array.from({ length: 20 }, () => postEvents(host.url, [event])))
      expect(results.map((r) => r.status)).toEqual(Array(20).fill(200))
      expect(results.reduce((n, r) => n + r.body.accepted, 0)).toBe(1)
      expect(results.reduce((n, r) => n + r.body.duplicates, 0)).toBe(19)
      const stored = await getJson(`${host.url}/admin/events?limit=1000`, { authorization: `Bearer ${ADMIN}` })
      expect(stored.body.events.filter((e: any) => e.id === 'race-1')).toHaveLength(1)
    })

    it('publishes the schema', async () => {
      const res = await getJson(`${host.url}/events/schema`)
      expect(res.status).toBe(200)
      expect(res.body.schemaVersion).toBe(1)
      expect(res.body.supportedVersions).toEqual([1])
      expect(res.body.events).toHaveLength(10)
      expect(res.body.envelopeSchema.properties.occurredAt.format).toBe('date-time')
      expect(res.body.limits.maxEvents).toBe(5)
    })

    it('leaves paths that are not its own to the host', async () => {
      const res = await rawRequest(`${host.url}/events/other`, { method: 'GET' })
      expect(res.status).toBe(404)
    })
  })

  describe(`${label}: tokens`, () => {
    let host: RunningHost
    beforeAll(async () => {
      host = await startHost(factory, { token: ['current-token', 'tökén-lätin'], adminToken: ADMIN })
    })
    afterAll(() => host.close())

    const post = (headers: Record<string, string>) =>
      rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify([makeEvent()]) })

    it('refuses a missing token with 401 token_missing', async () => {
      const res = await post({})
      expect(res.status).toBe(401)
      expect(res.json).toMatchObject({ code: 'token_missing', message: expect.stringContaining('x-event-token') })
    })

    it('refuses a wrong token, a token of another length and a non-ASCII token with 401 token_invalid', async () => {
      for (const token of ['current-tokem', 'x', 'current-token-but-longer', 'cürrent-token', 'tökén-lätim']) {
        const res = await post({ 'x-event-token': token })
        expect(res.status, token).toBe(401)
        expect(res.json.code).toBe('token_invalid')
      }
    })

    it('accepts every configured token (rotation), including a non-ASCII one', async () => {
      expect((await post({ 'x-event-token': 'current-token' })).status).toBe(200)
      expect((await post({ 'x-event-token': 'tökén-lätin' })).status).toBe(200)
    })

    // Only meaningful when event-ingest reads the body itself: a host parser in front has read it already.
    if (!factory.hostReadsBody) {
      it('checks the token before reading the body', async () => {
        // A body far over the limit gets 401, not 413: the token was checked first.
        const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json', 'content-length': String(50 * 1024 * 1024) }, chunks: ['['] })
        expect(res.status).toBe(401)
      })
    }
  })

  describe(`${label}: publishable keys`, () => {
    const SECRET = 'server-secret-token'
    const SHOP_KEY = 'pk_test_shop_0123456789abcdef'
    const ANY_KEY = 'pk_test_any_0123456789abcdef'
    const SHOP = 'https://shop.example'
    let host: RunningHost
    beforeAll(async () => {
      host = await startHost(factory, {
        token: SECRET,
        adminToken: ADMIN,
        publishableKeys: [
          { id: 'shop', key: SHOP_KEY, sources: ['storefront'], origins: [SHOP, 'http://localhost:3000'] },
          { id: 'anywhere', key: ANY_KEY, sources: ['storefront', 'admin'], origins: ['*'] },
        ],
      }, '/api')
    })
    afterAll(() => host.close())
    const admin = { authorization: `Bearer ${ADMIN}` }
    const storedIds = async () => (await getJson(`${host.url}/admin/events?limit=1000`, admin)).body.events.map((e: any) => e.id)
    // What navigator.sendBeacon sends: a text/plain POST with no header of ours, Origin when cross-origin.
    const beacon = (query: string, body: unknown, headers: Record<string, string> = {}) =>
      rawRequest(`${host.url}/events/ingest${query}`, { headers: { 'content-type': 'text/plain;charset=UTF-8', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })

    it('accepts a beacon with ?key= while a secret token is required, and answers with CORS for the key\'s origin', async () => {
      const res = await beacon(`?key=${SHOP_KEY}`, [makeEvent({ id: 'pk-beacon' })], { origin: SHOP })
      expect(res.status, res.text).toBe(200)
      expect(res.json).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      expect(res.headers['access-control-allow-origin']).toBe(SHOP)
      // No Origin (a same-origin beacon in some browsers, a server): the key's sources still hold.
      const noOrigin = await beacon(`?key=${SHOP_KEY}&sentAt=${Date.now()}`, [makeEvent({ id: 'pk-no-origin' })])
      expect(noOrigin.status, noOrigin.text).toBe(200)
      expect(noOrigin.headers['access-control-allow-origin']).toBeUndefined()
      // A key for any origin.
      const any = await beacon(`?key=${ANY_KEY}`, [makeEvent({ id: 'pk-any', name: 'PromoApplied', source: 'admin', payload: {} })], { origin: 'https://other.example' })
      expect(any.status, any.text).toBe(200)
      expect(any.headers['access-control-allow-origin']).toBe('https://other.example')
      expect(await storedIds()).toEqual(expect.arrayContaining(['pk-beacon', 'pk-no-origin', 'pk-any']))
    })

    it('accepts the key in the body, {"key", "events"}, as text/plain and as JSON', async () => {
      const text = await beacon('', { key: SHOP_KEY, events: [makeEvent({ id: 'pk-body-text' })] }, { origin: SHOP })
      expect(text.status, text.text).toBe(200)
      expect(text.json.accepted).toBe(1)
      expect(text.headers['access-control-allow-origin']).toBe(SHOP)
      const json = await postEvents(host.url, { key: SHOP_KEY, events: [makeEvent({ id: 'pk-body-json' })] })
      expect(json.status).toBe(200)
      expect(json.body.accepted).toBe(1)
      expect(await storedIds()).toEqual(expect.arrayContaining(['pk-body-text', 'pk-body-json']))
      const extra = await beacon('', { key: SHOP_KEY, events: [], user: 'x' })
      expect(extra.status).toBe(400)
      expect(extra.json).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/^user: /) })
      const notString = await beacon('', { key: 42, events: [] })
      expect(notString.status).toBe(400)
      expect(notString.json).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/^key: /) })
      const notArray = await beacon('', { key: SHOP_KEY, events: {} })
      expect(notArray.status).toBe(400)
      expect(notArray.json).toMatchObject({ code: 'not_an_array', message: expect.stringMatching(/^events: /) })
    })

    it('refuses a wrong or unknown key with 401 key_invalid, in the query or the body, without echoing it', async () => {
      for (const key of ['pk_test_shop_0123456789abcdeg', 'pk_test', 'x', SHOP_KEY.toUpperCase()]) {
        const query = await beacon(`?key=${encodeURIComponent(key)}`, [makeEvent({ id: `pk-wrong-${key}` })], { origin: SHOP })
        expect(query.status, key).toBe(401)
        expect(query.json).toMatchObject({ code: 'key_invalid', message: expect.stringMatching(/^key \(query string\): /) })
        expect(query.text).not.toContain(key)
        const body = await beacon('', { key, events: [makeEvent({ id: `pk-wrong-body-${key}` })] })
        expect(body.status, key).toBe(401)
        expect(body.json.code).toBe('key_invalid')
        expect(body.text).not.toContain(key)
      }
      expect((await storedIds()).filter((id: string) => id.startsWith('pk-wrong'))).toEqual([])
    })

    it('refuses a key sent from an origin it was not issued for with 403 naming the origin', async () => {
      const res = await beacon(`?key=${SHOP_KEY}`, [makeEvent({ id: 'pk-evil' })], { origin: 'https://evil.example' })
      expect(res.status).toBe(403)
      expect(res.json).toMatchObject({ code: 'origin_forbidden', origin: 'https://evil.example', keyId: 'shop', message: expect.stringContaining('"https://evil.example"') })
      expect(res.headers['access-control-allow-origin']).toBeUndefined()
      // Exact origins only: another scheme or port, or a trailing slash, is another origin.
      for (const origin of ['http://shop.example', 'https://shop.example:8443', 'https://www.shop.example', 'null']) {
        expect((await beacon(`?key=${SHOP_KEY}`, [makeEvent()], { origin })).status, origin).toBe(403)
      }
      const body = await beacon('', { key: SHOP_KEY, events: [makeEvent({ id: 'pk-evil-body' })] }, { origin: 'https://evil.example' })
      expect(body.status).toBe(403)
      expect(await storedIds()).not.toContain('pk-evil')
      expect(await storedIds()).not.toContain('pk-evil-body')
    })

    it("rejects each event of a source the key does not allow, naming source, and stores the others", async () => {
      const res = await beacon(`?key=${SHOP_KEY}`, [
        makeEvent({ id: 'pk-src-ok' }),
        makeEvent({ id: 'pk-src-api', name: 'OrderCreated', source: 'api', payload: { orderId: 'o1' } }),
        makeEvent({ id: 'pk-src-bad', occurredAt: 'yesterday' }),
        makeEvent({ id: 'pk-src-admin', name: 'PromoApplied', source: 'admin', payload: {} }),
      ], { origin: SHOP })
      expect(res.status).toBe(200)
      expect(res.json.accepted).toBe(1)
      expect(res.json.rejected).toEqual([
        { index: 1, id: 'pk-src-api', errors: [{ path: 'source', message: 'source: publishable key "shop" may send storefront events only, got "api"' }] },
        { index: 2, id: 'pk-src-bad', errors: [expect.objectContaining({ path: 'occurredAt' })] },
        { index: 3, id: 'pk-src-admin', errors: [{ path: 'source', message: 'source: publishable key "shop" may send storefront events only, got "admin"' }] },
      ])
      const ids = await storedIds()
      expect(ids).toContain('pk-src-ok')
      expect(ids).not.toContain('pk-src-api')
      expect(ids).not.toContain('pk-src-admin')
      // The secret token is not limited to sources.
      const server = await postEvents(host.url, [makeEvent({ id: 'pk-src-server', name: 'OrderCreated', source: 'api', payload: { orderId: 'o1' } })], { 'x-event-token': SECRET })
      expect(server.body).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
    })

    it('never accepts the secret token in the query string or the body, and never echoes it', async () => {
      for (const query of [`?key=${SECRET}`, `?token=${SECRET}`, `?x-event-token=${SECRET}`, `?token=${SECRET}&key=${SHOP_KEY}`]) {
        const res = await beacon(query, [makeEvent({ id: 'pk-secret-query' })])
        expect(res.status, query).toBe(401)
        expect(res.json.code, query).toBe('token_not_allowed')
        expect(res.text).not.toContain(SECRET)
      }
      // Even beside the right header: the token in the URL is a leak to fix, not to ignore.
      const withHeader = await beacon(`?token=${SECRET}`, [makeEvent({ id: 'pk-secret-header' })], { 'x-event-token': SECRET })
      expect(withHeader.status).toBe(401)
      expect(withHeader.json.code).toBe('token_not_allowed')
      const body = await beacon('', { key: SECRET, events: [makeEvent({ id: 'pk-secret-body' })] })
      expect(body.status).toBe(401)
      expect(body.json.code).toBe('token_not_allowed')
      expect(body.text).not.toContain(SECRET)
      const both = await beacon(`?key=${SHOP_KEY}`, [makeEvent()], { 'x-event-token': SECRET })
      expect(both.status).toBe(400)
      expect(both.json).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/^key: /) })
      const ids = await storedIds()
      expect(ids.filter((id: string) => id.startsWith('pk-secret'))).toEqual([])
    })

    it('still needs a credential: no token and no key is 401 token_missing, naming both ways', async () => {
      const res = await beacon('', [makeEvent({ id: 'pk-none' })])
      expect(res.status).toBe(401)
      expect(res.json).toMatchObject({ code: 'token_missing', message: expect.stringContaining('?key=') })
      const header = await postEvents(host.url, [makeEvent({ id: 'pk-header' })], { 'x-event-token': SECRET })
      expect(header.status).toBe(200)
      const wrong = await postEvents(host.url, [makeEvent()], { 'x-event-token': SHOP_KEY })
      expect(wrong.status).toBe(401)
      expect(wrong.body.code).toBe('token_invalid')
    })

    it('never opens an admin route to a publishable key', async () => {
      for (const path of ['/admin/events/stats', '/admin/events', '/admin/events/dead-letters']) {
        const query = await getJson(`${host.url}${path}?key=${SHOP_KEY}`, { origin: SHOP })
        expect(query.status, path).toBe(401)
        expect(query.body.code).toBe('admin_token_missing')
        expect(query.headers.get('access-control-allow-origin')).toBeNull()
        const bearer = await getJson(`${host.url}${path}`, { authorization: `Bearer ${SHOP_KEY}` })
        expect(bearer.status, path).toBe(401)
        expect(bearer.body.code).toBe('admin_token_invalid')
      }
    })

    it("answers a preflight with ?key= for the key's origins only", async () => {
      const ask = (query: string, origin: string) => rawRequest(`${host.url}/events/ingest${query}`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      })
      const ok = await ask(`?key=${SHOP_KEY}`, SHOP)
      expect(ok.status).toBe(204)
      expect(ok.headers['access-control-allow-origin']).toBe(SHOP)
      expect(ok.headers['access-control-allow-methods']).toContain('POST')
      expect(ok.headers['access-control-allow-headers']).toContain('content-type')
      for (const [query, origin] of [[`?key=${SHOP_KEY}`, 'https://evil.example'], ['?key=pk_test_unknown_0123456789', SHOP], ['', SHOP]] as const) {
        const res = await ask(query, origin)
        expect(res.status).toBe(204)
        expect(res.headers['access-control-allow-origin'], `${query} ${origin}`).toBeUndefined()
      }
      // JSON from the key's origin, after its preflight.
      const post = await rawRequest(`${host.url}/events/ingest?key=${SHOP_KEY}`, { headers: { 'content-type': 'application/json', origin: SHOP }, body: JSON.stringify([makeEvent({ id: 'pk-json' })]) })
      expect(post.status).toBe(200)
      expect(post.headers['access-control-allow-origin']).toBe(SHOP)
    })

    it('counts accepted events per key id, and refusals of keys by code, in stats', async () => {
      const start = (await getJson(`${host.url}/admin/events/stats`, admin)).body
      const before = start.failures.refusedByCode
      const ok = await beacon(`?key=${SHOP_KEY}`, [makeEvent({ id: 'pk-count-1' }), makeEvent({ id: 'pk-count-2' }), makeEvent({ id: 'pk-count-api', name: 'OrderCreated', source: 'api', payload: { orderId: 'o' } })])
      expect(ok.json.accepted).toBe(2)
      expect((await beacon(`?key=${SHOP_KEY}`, [makeEvent({ id: 'pk-count-1' })])).json.duplicates).toBe(1)
      await postEvents(host.url, [makeEvent({ id: 'pk-count-server' })], { 'x-event-token': SECRET })
      await beacon('?key=pk_test_unknown_0123456789', [makeEvent()])
      await beacon(`?key=${SHOP_KEY}`, [makeEvent()], { origin: 'https://evil.example' })
      await beacon(`?token=${SECRET}`, [makeEvent()])
      const after = (await getJson(`${host.url}/admin/events/stats`, admin)).body.failures.refusedByCode
      for (const code of ['key_invalid', 'origin_forbidden', 'token_not_allowed']) expect((after[code] ?? 0) - (before[code] ?? 0), code).toBe(1)
      // Stored events only, under the key's id: a duplicate, a rejected event and a token's batch are not the key's.
      const byKey = (await getJson(`${host.url}/admin/events/stats`, admin)).body.byKey
      expect(byKey.shop - (start.byKey.shop ?? 0)).toBe(2)
      for (const id of Object.keys(byKey)) expect(['shop', 'anywhere']).toContain(id)
      const published = JSON.stringify((await getJson(`${host.url}/admin/events/stats`, admin)).body)
      expect(published).not.toContain(SECRET)
      expect(published).not.toContain(SHOP_KEY)
    })
  })

  describe(`${label}: admin access`, () => {
    it('refuses admin routes by default (no admin token, no hook) with 403', async () => {
      const host = await startHost(factory, {})
      try {
        for (const path of ['/admin/events/stats', '/admin/events']) {
          const res = await getJson(`${host.url}${path}`)
          expect(res.status).toBe(403)
          expect(res.body.code).toBe('admin_disabled')
        }
      } finally {
        await host.close()
      }
    })

    it('needs the admin bearer token when one is configured', async () => {
      const host = await startHost(factory, { adminToken: ADMIN })
      try {
        const missing = await getJson(`${host.url}/admin/events/stats`)
        expect(missing.status).toBe(401)
        expect(missing.body.code).toBe('admin_token_missing')
        expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/)
        const wrong = await getJson(`${host.url}/admin/events/stats`, { authorization: 'Bearer nope' })
        expect(wrong.status).toBe(401)
        expect(wrong.body.code).toBe('admin_token_invalid')
        const ingestToken = await getJson(`${host.url}/admin/events/stats`, { 'x-event-token': ADMIN })
        expect(ingestToken.status).toBe(401)
        const ok = await getJson(`${host.url}/admin/events/stats`, { authorization: `Bearer ${ADMIN}` })
        expect(ok.status).toBe(200)
      } finally {
        await host.close()
      }
    })

    it('asks the host authorize hook, which can refuse with 403', async () => {
      const host = await startHost(factory, { authorize: (request: { headers: unknown }) => request.headers instanceof Headers ? request.headers.get('x-role') === 'ops' : (request.headers as Record<string, string>)['x-role'] === 'ops' })
      try {
        expect((await getJson(`${host.url}/admin/events/stats`, { 'x-role': 'ops' })).status).toBe(200)
        const denied = await getJson(`${host.url}/admin/events/stats`, { 'x-role': 'guest' })
        expect(denied.status).toBe(403)
        expect(denied.body.code).toBe('admin_forbidden')
      } finally {
        await host.close()
      }
    })
  })

  describe(`${label}: clock skew`, () => {
    let host: RunningHost
    beforeAll(async () => {
      host = await startHost(factory, { adminToken: ADMIN }, '/api')
    })
    afterAll(() => host.close())
    const HOUR = 3_600_000
    const admin = { authorization: `Bearer ${ADMIN}` }
    const stored = async (id: string) => (await getJson(`${host.url}/admin/events?limit=100`, admin)).body.events.find((e: any) => e.id === id)

    it('corrects the time of a batch whose producer clock is off (x-event-sent-at), keeping occurredAt as sent', async () => {
      // The producer's clock is two hours behind: it sends 5 s after the event, by its clock.
      const sentAt = new Date(Date.now() - 2 * HOUR).toISOString()
      const occurredAt = new Date(Date.parse(sentAt) - 5000).toISOString()
      const res = await postEvents(host.url, [makeEvent({ id: 'skew-header', occurredAt })], { 'x-event-sent-at': sentAt })
      expect(res.body).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      const event = await stored('skew-header')
      expect(event.occurredAt).toBe(occurredAt)
      expect(event.clockSkewMs).toBeGreaterThanOrEqual(2 * HOUR)
      expect(event.clockSkewMs).toBeLessThan(2 * HOUR + 5000)
      const corrected = Date.parse(event.correctedOccurredAt)
      expect(Date.parse(event.receivedAt) - corrected).toBeGreaterThanOrEqual(4900)
      expect(Date.parse(event.receivedAt) - corrected).toBeLessThan(10_000)
      // Lag is counted from the corrected time: seconds, not two hours.
      const stats = (await getJson(`${host.url}/admin/events/stats`, admin)).body
      expect(stats.clockSkew).toMatchObject({ corrected: 1, ignored: 0 })
      expect(stats.clockSkew.maxMs).toBeGreaterThanOrEqual(2 * HOUR - 60_000)
      expect(stats.lag.maxMs).toBeLessThan(60_000)
    })

    it('takes the send time of a beacon from the sentAt query parameter', async () => {
      const sentAt = new Date(Date.now() + HOUR).toISOString()
      const occurredAt = new Date(Date.parse(sentAt) - 1000).toISOString()
      const res = await rawRequest(`${host.url}/events/ingest?sentAt=${encodeURIComponent(sentAt)}`, { headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: JSON.stringify([makeEvent({ id: 'skew-beacon', occurredAt })]) })
      expect(res.status).toBe(200)
      const event = await stored('skew-beacon')
      expect(event.clockSkewMs).toBeLessThan(-HOUR + 5000)
      expect(event.clockSkewMs).toBeGreaterThan(-HOUR - 1000)
      expect(Date.parse(event.receivedAt) - Date.parse(event.correctedOccurredAt)).toBeGreaterThanOrEqual(900)
    })

    it('leaves a skew within the tolerance alone, and ignores and counts a send time that cannot be right', async () => {
      const before = (await getJson(`${host.url}/admin/events/stats`, admin)).body.clockSkew
      const within = await postEvents(host.url, [makeEvent({ id: 'skew-within' })], { 'x-event-sent-at': new Date(Date.now() - 20_000).toISOString() })
      expect(within.status).toBe(200)
      expect(await stored('skew-within')).not.toHaveProperty('correctedOccurredAt')
      const occurredAt = new Date().toISOString()
      for (const [id, sentAt] of [['skew-bad', 'yesterday'], ['skew-early', new Date(Date.now() - HOUR).toISOString()], ['skew-far', '1764633600']]) {
        const res = await postEvents(host.url, [makeEvent({ id, occurredAt })], { 'x-event-sent-at': sentAt! })
        expect(res.body, `${id}: a send time never refuses a batch`).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
        const event = await stored(id!)
        expect(event.occurredAt).toBe(occurredAt)
        expect(event, id).not.toHaveProperty('correctedOccurredAt')
      }
      const after = (await getJson(`${host.url}/admin/events/stats`, admin)).body.clockSkew
      expect(after.corrected - before.corrected).toBe(0)
      expect(after.ignored - before.ignored).toBe(3)
    })
  })

  defineCloudEventsSuite(factory, label)
  defineMetricsSuite(factory, label)
  defineReplaySuite(factory, label)

  describe(`${label}: PII redaction`, () => {
    const SECRET = 'conformance-redaction-secret-0123456789'
    const hmac = (text: string) => `hmac-sha256:${createHmac('sha256', SECRET).update(text).digest('hex')}`
    const admin = { authorization: `Bearer ${ADMIN}` }
    let host: RunningHost
    let sink: Awaited<ReturnType<typeof startSink>>
    beforeAll(async () => {
      sink = await startSink()
      const model = createEventModel({
        events: { SignedUp: { sources: ['storefront'], redact: { email: 'hash', 'device.ip': 'drop' } } },
        redact: [
          { events: ['OrderCreated'], path: 'customer.email', action: 'hash' },
          { events: ['OrderCreated'], path: 'customer.phone', action: 'mask' },
          { events: ['OrderCreated'], path: 'items[].giftNote', action: 'drop' },
          { path: 'debug', action: 'drop' },
        ],
      })
      host = await startHost(factory, { adminToken: ADMIN, model, redaction: { secret: SECRET }, sink: { url: sink.url, minBackoffMs: 20, maxBackoffMs: 200 } }, '/api')
    })
    afterAll(async () => {
      await host.close()
      await sink.close()
    })
    const stored = async (id: string) => (await getJson(`${host.url}/admin/events?limit=100`, admin)).body.events.find((e: any) => e.id === id)
    const order = (id: string) => makeEvent({
      id,
      name: 'OrderCreated',
      source: 'api',
      payload: { orderId: 'ord_1', customer: { email: 'ann@example.com', phone: '+33 6 12 34 56 78', tier: 'gold' }, items: [{ sku: 'S1', giftNote: 'Love, Ann' }, { sku: 'S2' }], debug: { ua: 'x' } },
    })
    const redactedPayload = { orderId: 'ord_1', customer: { email: hmac('ann@example.com'), phone: '***', tier: 'gold' }, items: [{ sku: 'S1' }, { sku: 'S2' }] }

    it('stores and forwards redacted payloads (drop, mask, HMAC on nested paths and arrays), never the values sent', async () => {
      const before = (await getJson(`${host.url}/admin/events/stats`, admin)).body.redacted
      const signedUp = makeEvent({ id: 'pii-signup', name: 'SignedUp', payload: { email: 'bob@example.com', device: { ip: '203.0.113.7', os: 'ios' } } })
      const untouched = makeEvent({ id: 'pii-none', payload: { productId: 'p1' } })
      const res = await postEvents(host.url, [order('pii-order'), signedUp, untouched])
      expect(res.body).toEqual({ accepted: 3, duplicates: 0, rejected: [] })
      expect((await stored('pii-order')).payload).toEqual(redactedPayload)
      expect((await stored('pii-signup')).payload).toEqual({ email: hmac('bob@example.com'), device: { os: 'ios' } })
      expect((await stored('pii-none')).payload).toEqual({ productId: 'p1' })
      await waitFor(() => sink.storedIds().includes('pii-order'), 10_000, 'the batch at the sink')
      const forwarded = sink.stored.flatMap((r) => r.events)
      expect(forwarded.find((e) => e.id === 'pii-order')!.payload).toEqual(redactedPayload)
      expect(forwarded.find((e) => e.id === 'pii-signup')!.payload).toEqual({ email: hmac('bob@example.com'), device: { os: 'ios' } })
      const everything = JSON.stringify([forwarded, (await getJson(`${host.url}/admin/events?limit=100`, admin)).body])
      for (const secret of ['ann@example.com', '+33 6 12 34 56 78', 'Love, Ann', 'bob@example.com', '203.0.113.7', SECRET]) expect(everything).not.toContain(secret)
      const after = (await getJson(`${host.url}/admin/events/stats`, admin)).body.redacted
      expect({ events: after.events - before.events, dropped: after.dropped - before.dropped, masked: after.masked - before.masked, hashed: after.hashed - before.hashed })
        .toEqual({ events: 2, dropped: 3, masked: 1, hashed: 2 })
    })

    it('redacts a text/plain beacon the same way, and a retried batch stays one redacted event', async () => {
      const body = JSON.stringify([order('pii-beacon')])
      const first = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'text/plain;charset=UTF-8' }, body })
      expect(first.json).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      const again = await postEvents(host.url, [order('pii-beacon')])
      expect(again.body).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
      expect((await stored('pii-beacon')).payload).toEqual(redactedPayload)
    })

    it('publishes the rules with GET /events/schema, without the secret', async () => {
      const res = await getJson(`${host.url}/events/schema`)
      expect(res.status).toBe(200)
      const rules = Object.fromEntries(res.body.events.map((e: any) => [e.name, e.redact]))
      expect(rules.OrderCreated).toEqual([
        { path: 'items[].giftNote', action: 'drop' },
        { path: 'debug', action: 'drop' },
        { path: 'customer.phone', action: 'mask' },
        { path: 'customer.email', action: 'hash' },
      ])
      expect(rules.SignedUp).toEqual([{ path: 'device.ip', action: 'drop' }, { path: 'debug', action: 'drop' }, { path: 'email', action: 'hash' }])
      expect(rules.ProductViewed).toEqual([{ path: 'debug', action: 'drop' }])
      expect(JSON.stringify(res.body)).not.toContain(SECRET)
    })
  })

  describe(`${label}: rate limits`, () => {
    const admin = { authorization: `Bearer ${ADMIN}` }
    const json = { 'content-type': 'application/json' }
    const post = (url: string, events: unknown[], headers: Record<string, string> = {}) => rawRequest(`${url}/events/ingest`, { headers: { ...json, ...headers }, body: JSON.stringify(events) })

    describe('per address, X-Forwarded-For not trusted (the default)', () => {
      let host: RunningHost
      beforeAll(async () => {
        host = await startHost(factory, { adminToken: ADMIN, rateLimits: { perAddress: { points: 3, durationSeconds: 60 } } }, '/api')
      })
      afterAll(() => host.close())

      it('lets exactly N requests of an address through, whatever X-Forwarded-For says, and answers the next 429 with Retry-After naming the limit', async () => {
        for (let i = 0; i < 3; i++) {
          const res = await post(host.url, [makeEvent()], { 'x-forwarded-for': `203.0.113.${i}` })
          expect(res.status, res.text).toBe(200)
        }
        const refused = await post(host.url, [makeEvent({ id: 'rl-address-refused' })], { 'x-forwarded-for': '203.0.113.99' })
        expect(refused.status).toBe(429)
        expect(refused.json).toMatchObject({ code: 'rate_limited', limit: 'perAddress', points: 3, durationSeconds: 60 })
        expect(refused.json.message).toMatch(/^rate limit perAddress: 3 requests per 60 s; retry in \d+ s$/)
        expect(refused.headers['retry-after']).toBe(String(refused.json.retryAfterSeconds))
        expect(refused.json.retryAfterSeconds).toBeGreaterThanOrEqual(1)
        expect(refused.json.retryAfterSeconds).toBeLessThanOrEqual(60)
        // Refused before the body is read, like the other refusals that leave it unread.
        if (!factory.hostReadsBody) expect(refused.headers.connection).toBe('close')
        const stored = await getJson(`${host.url}/admin/events?limit=100`, admin)
        expect(stored.body.events.map((e: any) => e.id)).not.toContain('rl-address-refused')
        // Only the ingest route is limited.
        expect((await getJson(`${host.url}/events/schema`)).status).toBe(200)
        const stats = (await getJson(`${host.url}/admin/events/stats`, admin)).body
        expect(stats.rateLimits).toEqual({ refused: 1, byLimit: { perAddress: 1 }, storeErrors: 0 })
        expect(stats.failures.refusedByCode.rate_limited).toBe(1)
      })
    })

    describe('per publishable key', () => {
      let host: RunningHost
      const keyA = 'pk_test_rate_limit_key_a_000001'
      const keyB = 'pk_test_rate_limit_key_b_000002'
      beforeAll(async () => {
        host = await startHost(factory, {
          adminToken: ADMIN,
          publishableKeys: [
            { id: 'shop-a', key: keyA, sources: ['storefront'], origins: ['*'] },
            { id: 'shop-b', key: keyB, sources: ['storefront'], origins: ['*'] },
          ],
          rateLimits: { perKey: { points: 2, durationSeconds: 60 } },
        }, '/api')
      })
      afterAll(() => host.close())
      const beacon = (key: string) => rawRequest(`${host.url}/events/ingest?key=${key}`, { headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: JSON.stringify([makeEvent()]) })

      it('lets exactly N requests of a key through, in the query string or the body, and answers the next 429 naming perKey; other keys keep theirs', async () => {
        expect((await beacon(keyA)).status).toBe(200)
        const inBody = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: JSON.stringify({ key: keyA, events: [makeEvent()] }) })
        expect(inBody.status, inBody.text).toBe(200)
        const refused = await beacon(keyA)
        expect(refused.status).toBe(429)
        expect(refused.json).toMatchObject({ code: 'rate_limited', limit: 'perKey', points: 2, durationSeconds: 60 })
        expect(refused.headers['retry-after']).toBe(String(refused.json.retryAfterSeconds))
        const refusedInBody = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: JSON.stringify({ key: keyA, events: [makeEvent()] }) })
        expect(refusedInBody.status).toBe(429)
        expect((await beacon(keyB)).status).toBe(200)
        const stats = (await getJson(`${host.url}/admin/events/stats`, admin)).body
        expect(stats.rateLimits).toEqual({ refused: 2, byLimit: { perKey: 2 }, storeErrors: 0 })
        expect(stats.byKey).toEqual({ 'shop-a': 2, 'shop-b': 1 })
      })
    })

    describe('per address behind one proxy (trustProxy: 1), per token and per source', () => {
      let host: RunningHost
      beforeAll(async () => {
        host = await startHost(factory, {
          adminToken: ADMIN,
          token: ['token-a', 'token-b', 'token-c', 'token-d', 'token-e'],
          rateLimits: { perAddress: { points: 2, durationSeconds: 60 }, perToken: { points: 3, durationSeconds: 60 }, perSource: { points: 6, durationSeconds: 60 }, trustProxy: 1 },
        }, '/api')
      })
      afterAll(() => host.close())
      let client = 0
      /** A request from a client of its own (by X-Forwarded-For), so only the limit under test counts. */
      const fresh = () => ({ 'x-forwarded-for': `198.51.100.${++client}` })
      // Every source has its own count of 6 events: each test sends another source.
      const order = () => makeEvent({ name: 'OrderCreated', source: 'api', payload: { orderId: 'o1' } })

      it('keys the address on the X-Forwarded-For entry the proxy added', async () => {
        const a = { 'x-event-token': 'token-a', 'x-forwarded-for': '192.0.2.1, 10.1.1.1' }
        const b = { 'x-event-token': 'token-b', 'x-forwarded-for': '10.1.1.2' }
        expect((await post(host.url, [makeEvent()], a)).status).toBe(200)
        expect((await post(host.url, [makeEvent()], b)).status).toBe(200)
        expect((await post(host.url, [makeEvent()], a)).status).toBe(200)
        // The entry the client wrote itself (192.0.2.1) is not the key: 10.1.1.1 is.
        const refused = await post(host.url, [makeEvent()], { ...a, 'x-forwarded-for': '192.0.2.200, 10.1.1.1' })
        expect(refused.status).toBe(429)
        expect(refused.json.limit).toBe('perAddress')
        expect((await post(host.url, [makeEvent()], b)).status).toBe(200)
      })

      it('lets exactly N requests per token through, then 429 naming perToken; other tokens go on', async () => {
        for (let i = 0; i < 3; i++) expect((await post(host.url, [order()], { 'x-event-token': 'token-c', ...fresh() })).status).toBe(200)
        const refused = await post(host.url, [order()], { 'x-event-token': 'token-c', ...fresh() })
        expect(refused.status).toBe(429)
        expect(refused.json).toMatchObject({ code: 'rate_limited', limit: 'perToken', points: 3 })
        expect(refused.headers['retry-after']).toBe(String(refused.json.retryAfterSeconds))
        // A wrong token is refused as such, never counted against a token.
        expect((await post(host.url, [order()], { 'x-event-token': 'token-x', ...fresh() })).status).toBe(401)
      })

      it('counts events per source: a batch reaching N exactly passes, one event more gets 429 naming the source', async () => {
        const bot = (id: string) => makeEvent({ id, name: 'BotCommand', source: 'bot', payload: { command: '/help' } })
        const first = await post(host.url, [bot('rl-bot-1'), bot('rl-bot-2'), bot('rl-bot-3')], { 'x-event-token': 'token-d', ...fresh() })
        expect(first.status, first.text).toBe(200)
        // A beacon counts the same.
        const beacon = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'text/plain;charset=UTF-8', 'x-event-token': 'token-e', ...fresh() }, body: JSON.stringify([bot('rl-bot-4'), bot('rl-bot-5'), bot('rl-bot-6')]) })
        expect(beacon.status, beacon.text).toBe(200)
        const refused = await post(host.url, [bot('rl-bot-7')], { 'x-event-token': 'token-d', ...fresh() })
        expect(refused.status).toBe(429)
        expect(refused.json).toMatchObject({ code: 'rate_limited', limit: 'perSource', source: 'bot', points: 6 })
        expect(refused.json.message).toMatch(/from source "bot"/)
        expect(refused.headers['retry-after']).toBe(String(refused.json.retryAfterSeconds))
        // Other sources have their own count.
        expect((await post(host.url, [makeEvent()], { 'x-event-token': 'token-e', ...fresh() })).status).toBe(200)
        const stored = (await getJson(`${host.url}/admin/events?source=bot&limit=100`, admin)).body.events.map((e: any) => e.id)
        expect(stored.sort()).toEqual(['rl-bot-1', 'rl-bot-2', 'rl-bot-3', 'rl-bot-4', 'rl-bot-5', 'rl-bot-6'])
        const stats = (await getJson(`${host.url}/admin/events/stats`, admin)).body
        expect(stats.rateLimits.byLimit).toEqual({ perAddress: 1, perToken: 1, perSource: 1 })
      })
    })

    describe('shared by two instances on one Redis prefix', () => {
      const prefix = uniquePrefix('ratelimit')
      const hosts: RunningHost[] = []
      beforeAll(async () => {
        await requireRedis()
        for (const instanceId of ['rl_one', 'rl_two']) {
          hosts.push(await startHost(factory, {
            adminToken: ADMIN,
            instanceId,
            storage: { driver: 'redis', url: redisUrl, base: prefix },
            stats: { flushIntervalMs: 50 },
            rateLimits: { perAddress: { points: 4, durationSeconds: 60 }, perSource: { points: 5, durationSeconds: 60 }, trustProxy: 1 },
          }, '/api'))
        }
      })
      afterAll(async () => {
        await Promise.all(hosts.map((host) => host.close()))
        await deletePrefix(prefix)
      })

      it('lets exactly N requests of an address through across both instances, then refuses on either', async () => {
        const from = { 'x-forwarded-for': '192.0.2.10' }
        const order = () => makeEvent({ name: 'OrderCreated', source: 'api', payload: { orderId: 'o1' } })
        for (let i = 0; i < 4; i++) {
          const res = await post(hosts[i % 2]!.url, [order()], from)
          expect(res.status, `request ${i + 1} on instance ${(i % 2) + 1}: ${res.text}`).toBe(200)
        }
        for (const host of hosts) {
          const refused = await post(host.url, [order()], from)
          expect(refused.status).toBe(429)
          expect(refused.json).toMatchObject({ code: 'rate_limited', limit: 'perAddress', points: 4 })
          expect(refused.headers['retry-after']).toBe(String(refused.json.retryAfterSeconds))
        }
        // The counters live in Redis under the storage's prefix.
        const client = new Redis(redisUrl)
        try {
          expect(await client.get(`${prefix}:events:r:perAddress:192.0.2.10`)).toBe('6')
        } finally {
          client.disconnect()
        }
      })

      it('counts the events of a source across both instances', async () => {
        const bot = () => makeEvent({ name: 'BotCommand', source: 'bot', payload: { command: '/help' } })
        expect((await post(hosts[0]!.url, [bot(), bot(), bot()], { 'x-forwarded-for': '192.0.2.20' })).status).toBe(200)
        expect((await post(hosts[1]!.url, [bot(), bot()], { 'x-forwarded-for': '192.0.2.21' })).status).toBe(200)
        const refused = await post(hosts[0]!.url, [bot()], { 'x-forwarded-for': '192.0.2.22' })
        expect(refused.status).toBe(429)
        expect(refused.json).toMatchObject({ limit: 'perSource', source: 'bot', points: 5 })
        // A batch refused for one source gives back, in Redis, what its other sources took.
        const shop = (n: number) => Array.from({ length: n }, () => makeEvent())
        expect((await post(hosts[0]!.url, [...shop(5), bot()], { 'x-forwarded-for': '192.0.2.23' })).json).toMatchObject({ limit: 'perSource', source: 'bot' })
        const given = await post(hosts[1]!.url, shop(5), { 'x-forwarded-for': '192.0.2.24' })
        expect(given.status, given.text).toBe(200)
        // Either instance's stats sum both.
        await waitFor(async () => (await getJson(`${hosts[1]!.url}/admin/events/stats`, admin)).body.rateLimits.refused === 4, 5000, 'both instances\' refusals in stats')
        const stats = (await getJson(`${hosts[1]!.url}/admin/events/stats`, admin)).body
        expect(stats.rateLimits).toEqual({ refused: 4, byLimit: { perAddress: 2, perSource: 2 }, storeErrors: 0 })
      })
    })
  })

  describe(`${label}: stats and stored events`, () => {
    let host: RunningHost
    const auth = { authorization: `Bearer ${ADMIN}` }
    beforeAll(async () => {
      host = await startHost(factory, { adminToken: ADMIN })
    })
    afterAll(() => host.close())

    it('counts what was sent: totals, per name, per source, rejected, duplicates, lag', async () => {
      const now = Date.now()
      const events = [
        makeEvent({ id: 's1', name: 'OrderCreated', source: 'api', occurredAt: new Date(now - 2000).toISOString() }),
        makeEvent({ id: 's2', name: 'OrderCreated', source: 'api', occurredAt: new Date(now - 4000).toISOString() }),
        makeEvent({ id: 's3', name: 'BotCommand', source: 'bot', occurredAt: new Date(now - 6000).toISOString() }),
        makeEvent({ id: 's4', source: 'web' }),
      ]
      await postEvents(host.url, events)
      await postEvents(host.url, [events[0]])
      const res = await getJson(`${host.url}/admin/events/stats`, auth)
      expect(res.status).toBe(200)
      const stats = res.body
      expect(stats.totals).toMatchObject({ accepted: 3, duplicates: 1, rejected: 1 })
      expect(stats.byName).toEqual({ OrderCreated: 2, BotCommand: 1 })
      expect(stats.bySource).toEqual({ api: 2, bot: 1 })
      expect(stats.failures.rejected).toBe(1)
      await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/xml' }, body: '<events/>' })
      const refused = (await getJson(`${host.url}/admin/events/stats`, auth)).body
      expect(refused.failures.refusedRequests).toBe(1)
      expect(refused.failures.refusedByCode).toEqual({ unsupported_media_type: 1 })
      expect(stats.lag.count).toBe(3)
      expect(stats.lag.averageMs).toBeGreaterThanOrEqual(4000)
      expect(stats.lag.averageMs).toBeLessThan(4000 + 5000)
      expect(stats.series).toHaveLength(60)
      expect(stats.series.at(-1).accepted).toBeGreaterThanOrEqual(1)
    })

    it('lists stored events newest first, filtered and paged', async () => {
      const t0 = Date.now()
      for (let i = 0; i < 5; i++) {
        await postEvents(host.url, [makeEvent({ id: `list-${i}`, name: i % 2 ? 'AgentHeartbeat' : 'ProductViewed', source: i % 2 ? 'agent' : 'storefront' })])
      }
      const all = await getJson(`${host.url}/admin/events?since=${t0}&limit=2`, auth)
      expect(all.status).toBe(200)
      expect(all.body.events.map((e: any) => e.id)).toEqual(['list-4', 'list-3'])
      expect(all.body.events[0].receivedAt).toMatch(/Z$/)
      const next = await getJson(`${host.url}/admin/events?since=${t0}&limit=2&cursor=${all.body.nextCursor}`, auth)
      expect(next.body.events.map((e: any) => e.id)).toEqual(['list-2', 'list-1'])
      const last = await getJson(`${host.url}/admin/events?since=${t0}&limit=2&cursor=${next.body.nextCursor}`, auth)
      expect(last.body.events.map((e: any) => e.id)).toEqual(['list-0'])
      expect(last.body.nextCursor).toBeNull()
      const agents = await getJson(`${host.url}/admin/events?since=${t0}&source=agent`, auth)
      expect(agents.body.events.map((e: any) => e.id)).toEqual(['list-3', 'list-1'])
      const named = await getJson(`${host.url}/admin/events?since=${new Date(t0).toISOString()}&name=ProductViewed`, auth)
      expect(named.body.events.map((e: any) => e.id)).toEqual(['list-4', 'list-2', 'list-0'])
    })

    it('answers a bad filter with 400 naming the parameter', async () => {
      for (const [query, field] of [['name=Nope', 'name'], ['source=web', 'source'], ['since=yesterday', 'since'], ['limit=0', 'limit'], ['limit=5000', 'limit'], ['cursor=abc', 'cursor']]) {
        const res = await getJson(`${host.url}/admin/events?${query}`, auth)
        expect(res.status, query).toBe(400)
        expect(res.body.code).toBe('invalid_query')
        expect(res.body.message.startsWith(`${field}:`), res.body.message).toBe(true)
      }
    })
  })

  describe(`${label}: storage failures`, () => {
    it('answers 503 with Retry-After when storage fails, acknowledges nothing, and stores on retry', async () => {
      let failing = true
      const memory = memoryDriver()
      const flaky = defineDriver(() => ({
        ...memory,
        name: 'flaky',
        setItem(key: string, value: string) {
          if (failing && key.startsWith('events:b:')) throw new Error('disk on fire')
          return memory.setItem!(key, value, {})
        },
      }))
      const host = await startHost(factory, { storage: createStorage({ driver: flaky() }), adminToken: ADMIN })
      try {
        const events = [makeEvent({ id: 'f-1' }), makeEvent({ id: 'f-2' })]
        const res = await postEvents(host.url, events)
        expect(res.status).toBe(503)
        expect(res.headers.get('retry-after')).toBe('2')
        expect(res.body.code).toBe('storage_unavailable')
        const listed = await getJson(`${host.url}/admin/events`, { authorization: `Bearer ${ADMIN}` })
        expect(listed.body.events).toEqual([])
        failing = false
        const retry = await postEvents(host.url, events)
        expect(retry.status).toBe(200)
        expect(retry.body).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
        const stats = await getJson(`${host.url}/admin/events/stats`, { authorization: `Bearer ${ADMIN}` })
        expect(stats.body.failures.storage).toBe(2)
      } finally {
        await host.close()
      }
    })

    it('answers 503 within the storage timeout when storage hangs', async () => {
      const memory = memoryDriver()
      const hanging = defineDriver(() => ({
        ...memory,
        name: 'hanging',
        setItem: (key: string, value: string) => (key.startsWith('events:b:') ? new Promise<void>(() => {}) : memory.setItem!(key, value, {})),
      }))
      const host = await startHost(factory, { storage: createStorage({ driver: hanging() }), storageTimeoutMs: 300 })
      try {
        const started = Date.now()
        const res = await postEvents(host.url, [makeEvent()])
        expect(res.status).toBe(503)
        expect(Date.now() - started).toBeLessThan(5000)
        expect(res.body.message).toMatch(/timed out after 300 ms/)
      } finally {
        await host.close()
      }
    })
  })

  for (const guard of [false, true]) {
    describe(`${label}: one spelling per route${guard ? ', behind a host guard on /api/admin' : ''}`, () => {
      let host: RunningHost
      beforeAll(async () => {
        // The README's "admin access behind your own auth": event-ingest trusts the host.
        host = await startHost(factory, { authorize: () => true }, '/api', { guard })
      })
      afterAll(() => host.close())

      const ingestBody = (id: string) => JSON.stringify([makeEvent({ id })])

      it('serves every route under its canonical path', async () => {
        expect((await getJson(`${host.url}/events/schema`)).status).toBe(200)
        const ingested = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: ingestBody('canonical') })
        expect(ingested.status).toBe(200)
        for (const path of ['/admin/events/stats', '/admin/events']) {
          const res = await rawRequest(`${host.url}${path}`, { method: 'GET' })
          if (guard) expect(res.json, path).toEqual({ host: 'login first' })
          else expect(res.status, path).toBe(200)
        }
      })

      it('never serves another spelling of a route: percent-encoded, dot segments, doubled slashes, other case, trailing slash', async () => {
        let n = 0
        const ids: string[] = []
        // Every route the contract has, so a route added later is covered too.
        for (const route of Object.values(routes)) {
          const post = route === routes.ingest || route === routes.requeue
          // And the target in absolute form, which a host's path guard does not expect.
          for (const path of [...spellingsOf(`/api${route}`), `${host.origin}/api${route}`]) {
            for (const method of post ? ['POST'] : ['GET', 'HEAD']) {
              const id = `spelling-${n++}`
              if (route === routes.ingest) ids.push(id)
              const res = await rawRequest(host.origin, post ? { path, headers: { 'content-type': 'application/json' }, body: route === routes.ingest ? ingestBody(id) : '{}' } : { path, method })
              // The host's answer (its 404, its guard's 401, its 400 for a target it cannot parse), never event-ingest's.
              expect([400, 401, 404], `${method} ${path}: ${res.status} ${res.text.slice(0, 120)}`).toContain(res.status)
              expect(res.text, path).not.toMatch(/"(events|totals|accepted|schemaVersion|code|deadLetters|requeued)"/)
            }
          }
        }
        expect(n).toBeGreaterThan(100)
        const stored = (await host.ingest.events({ limit: 1000 })).events.map((e) => e.id)
        expect(stored.filter((id) => ids.includes(id))).toEqual([])
        expect(host.errors).toEqual([])
      })
    })
  }

  describe(`${label}: refusals close the connection`, () => {
    let host: RunningHost
    beforeAll(async () => {
      host = await startHost(factory, { token: 'right-token', limits: { maxBodyBytes: 4096 } }, '/api')
    })
    afterAll(() => host.close())

    // text/plain: no host body parser reads it, so every host leaves the body to event-ingest.
    const cases: [string, Record<string, string>, number, boolean][] = [
      ['a wrong token (Content-Length)', { 'content-type': 'text/plain', 'x-event-token': 'wrong' }, 401, false],
      ['a wrong token (chunked)', { 'content-type': 'text/plain', 'x-event-token': 'wrong' }, 401, true],
      ['a missing token (chunked)', { 'content-type': 'text/plain' }, 401, true],
      ['an unsupported content type (Content-Length)', { 'content-type': 'application/xml', 'x-event-token': 'right-token' }, 415, false],
      ['an unsupported content type (chunked)', { 'content-type': 'application/xml', 'x-event-token': 'right-token' }, 415, true],
      ['a Content-Length over maxBodyBytes', { 'content-type': 'text/plain', 'x-event-token': 'right-token' }, 413, false],
      ['a chunked body crossing maxBodyBytes', { 'content-type': 'text/plain', 'x-event-token': 'right-token' }, 413, true],
    ]
    for (const [what, headers, status, chunked] of cases) {
      it(`answers ${what} with ${status} and connection: close, and stops reading the upload`, async () => {
        const total = 64 * 1024 * 1024
        const outcome = await slowUpload(`${host.url}/events/ingest`, { headers, total, chunked, chunkBytes: 64 * 1024, intervalMs: 1 })
        expect(outcome.status).toBe(status)
        expect(outcome.headers.connection).toBe('close')
        expect(outcome.timedOut).toBe(false)
        // Closed by the server long before the client was done: it read at most its drain budget.
        expect(outcome.closedEarly).toBe(true)
        expect(outcome.sent).toBeLessThan(16 * 1024 * 1024)
        expect(host.errors).toEqual([])
      })
    }

    it('reads and drops at most refusalDrain.maxBytes after the answer: a refused upload within it is read to its end', async () => {
      const headers = { 'content-type': 'text/plain', 'x-event-token': 'wrong' }
      const total = 4 * 1024 * 1024
      const small = await startHost(factory, { token: 'right-token', refusalDrain: { maxBytes: 64 * 1024, maxMs: 60_000 } })
      const large = await startHost(factory, { token: 'right-token', refusalDrain: { maxBytes: 2 * total, maxMs: 60_000 } })
      try {
        const cut = await slowUpload(`${small.url}/events/ingest`, { headers, total, intervalMs: 1 })
        expect(cut).toMatchObject({ status: 401, closedEarly: true, timedOut: false })
        expect(cut.headers.connection).toBe('close')
        const whole = await slowUpload(`${large.url}/events/ingest`, { headers, total, intervalMs: 1 })
        // All sent, and the server closed the connection once the body had ended (no client timeout).
        expect(whole).toMatchObject({ status: 401, closedEarly: false, timedOut: false, sent: total })
        expect(whole.headers.connection).toBe('close')
      } finally {
        await small.close()
        await large.close()
      }
    })

    it('reads and drops for at most refusalDrain.maxMs after the answer', async () => {
      const slow = await startHost(factory, { token: 'right-token', refusalDrain: { maxBytes: 64 * 1024 * 1024, maxMs: 200 } })
      try {
        // 1 KiB every 5 ms: the 4 MiB would take 20 s; the server stops after 200 ms.
        const outcome = await slowUpload(`${slow.url}/events/ingest`, { headers: { 'content-type': 'text/plain', 'x-event-token': 'wrong' }, total: 4 * 1024 * 1024, chunkBytes: 1024, intervalMs: 5, deadlineMs: 10_000 })
        expect(outcome).toMatchObject({ status: 401, closedEarly: true, timedOut: false })
      } finally {
        await slow.close()
      }
    })

    it('keeps the connection of a request it read whole', async () => {
      const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json', 'x-event-token': 'right-token' }, body: '{"not":"an array"}' })
      expect(res.status).toBe(400)
      expect(res.headers.connection).not.toBe('close')
      const schema = await rawRequest(`${host.url}/events/schema`, { method: 'GET' })
      expect(schema.status).toBe(200)
      expect(schema.headers.connection).not.toBe('close')
    })
  })

  describe(`${label}: a body over the limit gets its 413 across`, () => {
    let host: RunningHost
    beforeAll(async () => {
      host = await startHost(factory, { limits: { maxBodyBytes: 4096 } }, '/api')
    })
    afterAll(() => host.close())

    // 64 pieces of 4 KiB, one a millisecond: still sending when the 413 comes, the whole body within
    // the drain budget; text/plain, which no host body parser reads.
    const piece = Buffer.alloc(4096, 0x20)
    const pieces = 64
    const tick = () => new Promise((resolve) => setTimeout(resolve, 1))

    it('a client still sending when the 413 comes, and slow to read it, gets it', async () => {
      const outcome = await busyClientUpload(`${host.url}/events/ingest`, {
        headers: { 'content-type': 'text/plain' },
        first: Buffer.alloc(8192, 0x20),
        later: Buffer.alloc(64 * 1024, 0x20),
        busyMs: 250,
      })
      expect(outcome, outcome.text.slice(0, 200)).toMatchObject({ status: 413 })
      expect(outcome.text).toMatch(/\r\nconnection: close\r\n/i)
      expect(outcome.text).toContain('"code":"body_too_large"')
    })

    it('every one of 20 chunked uploads with fetch reads the 413', async () => {
      for (let attempt = 0; attempt < 20; attempt++) {
        let sent = 0
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            await tick()
            if (sent++ < pieces) controller.enqueue(piece)
            else controller.close()
          },
        })
        const res = await fetch(`${host.url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body, duplex: 'half' } as RequestInit)
        expect(res.status, `attempt ${attempt}`).toBe(413)
        expect((await res.json()).code).toBe('body_too_large')
      }
    })

    it('every one of 20 chunked uploads with http.request reads the 413', async () => {
      for (let attempt = 0; attempt < 20; attempt++) {
        const outcome = await new Promise<{ status?: number; error?: string; text?: string }>((resolve) => {
          const req = httpRequest(`${host.url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'text/plain' } }, (res) => {
            let text = ''
            res.on('data', (chunk) => (text += chunk))
            res.on('end', () => resolve({ status: res.statusCode, text }))
            res.on('error', (error) => resolve({ status: res.statusCode, error: error.message }))
          })
          req.on('error', (error) => resolve({ error: (error as NodeJS.ErrnoException).code ?? error.message }))
          void (async () => {
            for (let i = 0; i < pieces && !req.destroyed; i++) {
              req.write(piece)
              await tick()
            }
            req.end()
          })()
        })
        expect(outcome, `attempt ${attempt}`).toMatchObject({ status: 413 })
        expect(JSON.parse(outcome.text!).code).toBe('body_too_large')
      }
    })
  })

  describe(`${label}: a client that drops the connection mid-upload`, () => {
    it('ends that request: nothing stored, nothing thrown to the host', async () => {
      const host = await startHost(factory, {}, '/api')
      try {
        // application/json: a host body parser in front reads it, and its abort is counted all the same.
        for (const type of ['text/plain', 'application/json']) {
          const before = (await host.ingest.stats()).failures.refusedByCode.request_aborted ?? 0
          const outcome = await slowUpload(`${host.url}/events/ingest`, { headers: { 'content-type': type }, total: 1024 * 1024, chunkBytes: 1000, intervalMs: 5, deadlineMs: 100 })
          expect(outcome.status).toBeUndefined()
          // The request is over once the core counts it; until then, wait (bounded by the test's timeout).
          while (((await host.ingest.stats()).failures.refusedByCode.request_aborted ?? 0) === before) await new Promise((r) => setTimeout(r, 20))
        }
        expect(host.errors).toEqual([])
        expect((await host.ingest.events()).events).toEqual([])
      } finally {
        await host.close()
      }
    })
  })

  describe(`${label}: living inside a host app`, () => {
    let host: RunningHost
    let root: string
    beforeAll(async () => {
      host = await startHost(factory, { cors: { origin: ['https://shop.example'] } }, '/api')
      root = host.url.slice(0, -'/api'.length)
    })
    afterAll(() => host.close())

    it("keeps the host's own JSON routes and body parsing working", async () => {
      const res = await rawRequest(`${root}/host/echo`, { headers: { 'content-type': 'application/json' }, body: '{"hello":"world"}' })
      expect(res.status).toBe(200)
      expect(res.json).toEqual({ echo: { hello: 'world' } })
    })

    it("leaves unknown paths to the host's own 404", async () => {
      for (const path of ['/nope', '/api/nope', '/api/events']) {
        const res = await rawRequest(`${root}${path}`, { method: 'GET' })
        expect(res.status, path).toBe(404)
        expect(res.json, path).toEqual({ host: 'not found' })
      }
    })

    it('serves the routes under the base path only', async () => {
      expect((await getJson(`${root}/api/events/schema`)).status).toBe(200)
      expect((await rawRequest(`${root}/events/schema`, { method: 'GET' })).json).toEqual({ host: 'not found' })
    })

    it('answers CORS preflights for allowed origins and tags responses', async () => {
      const preflight = await rawRequest(`${host.url}/events/ingest`, {
        method: 'OPTIONS',
        headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, x-event-token' },
      })
      expect(preflight.status).toBe(204)
      expect(preflight.headers['access-control-allow-origin']).toBe('https://shop.example')
      expect(preflight.headers['access-control-allow-headers']).toContain('x-event-token')
      const post = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'text/plain', origin: 'https://shop.example' }, body: JSON.stringify([makeEvent()]) })
      expect(post.status).toBe(200)
      expect(post.headers['access-control-allow-origin']).toBe('https://shop.example')
      const other = await rawRequest(`${host.url}/events/ingest`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })
      expect(other.headers['access-control-allow-origin']).toBeUndefined()
      const admin = await rawRequest(`${host.url}/admin/events/stats`, { method: 'GET', headers: { origin: 'https://shop.example' } })
      expect(admin.headers['access-control-allow-origin']).toBeUndefined()
    })
  })
}
