import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { defaults } from '../../src/core/options'
import { createEventIngest, resolveOptions, type EventIngest, type EventIngestOptions } from '../../src/index'
import { clientAddress, eventsPerSource } from '../../src/http/rate-limits'
import { makeEvent } from '../helpers/fixtures'

const fixedId = () => 'test_instance'
const opened: EventIngest<any>[] = []

afterEach(async () => {
  await Promise.all(opened.splice(0).map((ingest) => ingest.close()))
})

async function core(options: EventIngestOptions<any>) {
  const ingest = createEventIngest({ env: {}, ...options })
  opened.push(ingest)
  await ingest.ready()
  return ingest
}

function post(ingest: EventIngest<any>, events: unknown[], extra: { remoteAddress?: string; headers?: Record<string, string> } = {}) {
  return ingest.handle({
    method: 'POST',
    path: '/events/ingest',
    headers: { 'content-type': 'application/json', ...extra.headers },
    remoteAddress: extra.remoteAddress,
    body: { bytes: new TextEncoder().encode(JSON.stringify(events)) },
  })
}

describe('rateLimits option', () => {
  it('is off by default, and trusts no X-Forwarded-For unless told', () => {
    expect(resolveOptions({}, {}, fixedId).rateLimits).toBeUndefined()
    expect(resolveOptions({ rateLimits: { perAddress: { points: 1, durationSeconds: 1 } } }, {}, fixedId).rateLimits).toEqual({
      perAddress: { points: 1, durationSeconds: 1 },
      perToken: undefined,
      perKey: undefined,
      perSource: undefined,
      trustedHops: 0,
    })
    expect(resolveOptions({ rateLimits: { perSource: { points: 1, durationSeconds: 1 }, trustProxy: true } }, {}, fixedId).rateLimits!.trustedHops).toBe(Number.POSITIVE_INFINITY)
    expect(resolveOptions({ rateLimits: { perSource: { points: 1, durationSeconds: 1 }, trustProxy: 2 } }, {}, fixedId).rateLimits!.trustedHops).toBe(2)
    expect(resolveOptions({ rateLimits: false }, {}, fixedId).rateLimits).toBeUndefined()
  })

  it('has the defaults the README documents: off, and trustProxy false', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
    expect(readme).toMatch(/^\| `rateLimits` \| \| none \|/m)
    for (const name of ['perAddress', 'perToken', 'perKey', 'perSource']) expect(readme).toMatch(new RegExp(`^\\| \`${name}\` \\| off \\|`, 'm'))
    const trust = /^\| `trustProxy` \| `(\w+)` \|/m.exec(readme)
    expect(JSON.parse(trust![1]!)).toBe(defaults.rateLimits.trustProxy)
  })

  it('refuses bad values at creation, naming the field', () => {
    const bad: [unknown, RegExp][] = [
      ['yes', /^\[event-ingest\] rateLimits must be an object, got "yes"$/],
      [{ perAdress: { points: 1, durationSeconds: 1 } }, /rateLimits\.perAdress is not an option \(did you mean rateLimits\.perAddress\?\)/],
      [{ perAddress: { points: 0, durationSeconds: 60 } }, /rateLimits\.perAddress\.points must be a positive integer, got 0/],
      [{ perAddress: { points: 1.5, durationSeconds: 60 } }, /rateLimits\.perAddress\.points must be a positive integer, got 1\.5/],
      [{ perSource: { points: 10 } }, /rateLimits\.perSource\.durationSeconds is required/],
      [{ perSource: { points: 10, durationSeconds: '60' } }, /rateLimits\.perSource\.durationSeconds must be a positive integer, got "60"/],
      [{ perSource: { points: 10, durationSeconds: 60, burst: 2 } }, /rateLimits\.perSource\.burst is not an option/],
      [{ perSource: { points: 10, durationSeconds: 60 }, trustProxy: -1 }, /rateLimits\.trustProxy must be true, false or a number of proxy hops/],
      [{ perSource: { points: 10, durationSeconds: 60 }, trustProxy: 'loopback' }, /rateLimits\.trustProxy must be true, false or a number of proxy hops .*got "loopback"/],
      [{ perToken: { points: 10, durationSeconds: 60 } }, /rateLimits\.perToken is set but ingest takes no token/],
      [{ perKey: { points: 10, durationSeconds: 60 } }, /rateLimits\.perKey is set but no publishable key is configured/],
    ]
    for (const [rateLimits, message] of bad) {
      expect(() => resolveOptions({ rateLimits: rateLimits as never }, {}, fixedId), JSON.stringify(rateLimits)).toThrow(message)
    }
    // With a token, perToken has something to count.
    expect(resolveOptions({ token: 't', rateLimits: { perToken: { points: 10, durationSeconds: 60 } } }, {}, fixedId).rateLimits!.perToken).toEqual({ points: 10, durationSeconds: 60 })
    // With a publishable key, perKey has.
    const publishableKeys = [{ id: 'shop', key: 'pk_unit_rate_limit_key_1', sources: ['storefront'], origins: ['*'] }] as never
    expect(resolveOptions({ publishableKeys, rateLimits: { perKey: { points: 5, durationSeconds: 60 } } }, {}, fixedId).rateLimits!.perKey).toEqual({ points: 5, durationSeconds: 60 })
  })
})

describe('the client address', () => {
  it('is the socket peer by default, whatever X-Forwarded-For says', () => {
    expect(clientAddress('10.0.0.9', '1.2.3.4', 0)).toBe('10.0.0.9')
    expect(clientAddress('::ffff:10.0.0.9', undefined, 0)).toBe('10.0.0.9')
    expect(clientAddress(undefined, '1.2.3.4', 0)).toBeUndefined()
  })

  it('is the entry n hops in from the socket with trustProxy n, the leftmost with true', () => {
    const chain = '203.0.113.7, 198.51.100.2, 10.0.0.5'
    expect(clientAddress('10.0.0.1', chain, 1)).toBe('10.0.0.5')
    expect(clientAddress('10.0.0.1', chain, 2)).toBe('198.51.100.2')
    expect(clientAddress('10.0.0.1', chain, 3)).toBe('203.0.113.7')
    // More hops trusted than the header holds: its leftmost entry.
    expect(clientAddress('10.0.0.1', chain, 9)).toBe('203.0.113.7')
    expect(clientAddress('10.0.0.1', chain, Number.POSITIVE_INFINITY)).toBe('203.0.113.7')
    // No header: the socket peer.
    expect(clientAddress('10.0.0.1', undefined, 1)).toBe('10.0.0.1')
    expect(clientAddress('10.0.0.1', ' , ', 1)).toBe('10.0.0.1')
    expect(clientAddress('10.0.0.1', '[2001:DB8::1]', 1)).toBe('2001:db8::1')
  })
})

describe('events per source', () => {
  it('counts the events of a batch by the source they name, valid or not; nothing for what has no source', () => {
    expect(eventsPerSource([makeEvent(), makeEvent({ occurredAt: 'yesterday' }), makeEvent({ source: 'bot' }), 7, null, { source: 3 }])).toEqual(new Map([['storefront', 2], ['bot', 1]]))
    expect(eventsPerSource({ source: 'bot' })).toEqual(new Map())
  })
})

describe('rate limits at their boundaries (memory)', () => {
  it('perAddress: exactly N requests of an address pass, N+1 is refused with 429 naming the limit; other addresses are not', async () => {
    const ingest = await core({ rateLimits: { perAddress: { points: 3, durationSeconds: 60 } } })
    for (let i = 0; i < 3; i++) expect((await post(ingest, [makeEvent()], { remoteAddress: '10.0.0.1' }))!.status).toBe(200)
    const refused = (await post(ingest, [makeEvent()], { remoteAddress: '10.0.0.1' }))!
    expect(refused.status).toBe(429)
    const body = JSON.parse(refused.body)
    expect(body).toMatchObject({ code: 'rate_limited', limit: 'perAddress', points: 3, durationSeconds: 60 })
    expect(body.message).toMatch(/^rate limit perAddress: 3 requests per 60 s; retry in \d+ s$/)
    expect(body.retryAfterSeconds).toBeGreaterThanOrEqual(1)
    expect(body.retryAfterSeconds).toBeLessThanOrEqual(60)
    expect(refused.headers['retry-after']).toBe(String(body.retryAfterSeconds))
    expect((await post(ingest, [makeEvent()], { remoteAddress: '10.0.0.2' }))!.status).toBe(200)
    // A request whose address is unknown is not limited per address.
    expect((await post(ingest, [makeEvent()]))!.status).toBe(200)
    const stats = await ingest.stats()
    expect(stats.rateLimits).toEqual({ refused: 1, byLimit: { perAddress: 1 }, storeErrors: 0 })
    expect(stats.failures.refusedByCode).toEqual({ rate_limited: 1 })
  })

  it('perAddress counts requests with a wrong token too, before the token is checked', async () => {
    const ingest = await core({ token: 'right', rateLimits: { perAddress: { points: 2, durationSeconds: 60 } } })
    const wrong = { remoteAddress: '10.0.0.1', headers: { 'x-event-token': 'wrong' } }
    expect((await post(ingest, [makeEvent()], wrong))!.status).toBe(401)
    expect((await post(ingest, [makeEvent()], wrong))!.status).toBe(401)
    expect((await post(ingest, [makeEvent()], wrong))!.status).toBe(429)
    expect((await post(ingest, [makeEvent()], { ...wrong, headers: { 'x-event-token': 'right' } }))!.status).toBe(429)
  })

  it('perToken: exactly N requests per token pass; a wrong token neither counts nor is limited', async () => {
    const ingest = await core({ token: ['a', 'b'], rateLimits: { perToken: { points: 2, durationSeconds: 60 } } })
    const as = (token: string) => ({ headers: { 'x-event-token': token } })
    expect((await post(ingest, [makeEvent()], as('a')))!.status).toBe(200)
    expect((await post(ingest, [makeEvent()], as('nope')))!.status).toBe(401)
    expect((await post(ingest, [makeEvent()], as('a')))!.status).toBe(200)
    const refused = (await post(ingest, [makeEvent()], as('a')))!
    expect(refused.status).toBe(429)
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'rate_limited', limit: 'perToken', points: 2 })
    expect((await post(ingest, [makeEvent()], as('b')))!.status).toBe(200)
    expect((await post(ingest, [makeEvent()], as('nope')))!.status).toBe(401)
  })

  it('perSource counts events: a batch that reaches N exactly passes, one event more is refused and nothing of it is stored', async () => {
    const ingest = await core({ rateLimits: { perSource: { points: 5, durationSeconds: 60 } } })
    const names: Record<string, string> = { storefront: 'ProductViewed', bot: 'BotCommand', api: 'OrderCreated' }
    const batch = (n: number, prefix: string, source = 'storefront') => Array.from({ length: n }, (_, i) => makeEvent({ id: `${prefix}-${i}`, source, name: names[source] }))
    expect((await post(ingest, batch(3, 'a')))!.status).toBe(200)
    expect(JSON.parse((await post(ingest, batch(2, 'b')))!.body)).toMatchObject({ accepted: 2 })
    const refused = (await post(ingest, batch(1, 'c')))!
    expect(refused.status).toBe(429)
    const body = JSON.parse(refused.body)
    expect(body).toMatchObject({ code: 'rate_limited', limit: 'perSource', source: 'storefront', points: 5 })
    expect(body.message).toMatch(/^rate limit perSource: 5 events per 60 s from source "storefront"; retry in \d+ s$/)
    expect(refused.headers['retry-after']).toBe(String(body.retryAfterSeconds))
    // Checked after the body was read: the connection may stay open.
    expect(refused.headers.connection).toBeUndefined()
    expect((await ingest.events()).events.map((e) => e.id)).not.toContain('c-0')
    // Each source has its own count; a batch refused for one source gives back what the others took.
    const mixed = [...batch(4, 'd', 'bot'), ...batch(1, 'e')]
    expect((await post(ingest, mixed))!.status).toBe(429)
    const bots = (await post(ingest, batch(5, 'f', 'bot')))!
    expect(bots.status, bots.body).toBe(200)
    expect((await post(ingest, batch(1, 'g', 'bot')))!.status).toBe(429)
    // A refused batch takes nothing from its own source either: a smaller one still fits.
    expect(JSON.parse((await post(ingest, batch(3, 'h', 'api')))!.body)).toMatchObject({ accepted: 3, rejected: [] })
    expect((await post(ingest, batch(3, 'i', 'api')))!.status).toBe(429)
    expect((await post(ingest, batch(2, 'j', 'api')))!.status).toBe(200)
    expect((await ingest.stats()).rateLimits.byLimit).toEqual({ perSource: 4 })
  })

  it('says when one batch alone is over the per-source limit', async () => {
    const ingest = await core({ rateLimits: { perSource: { points: 2, durationSeconds: 10 } } })
    const refused = (await post(ingest, [makeEvent({ id: 'x1' }), makeEvent({ id: 'x2' }), makeEvent({ id: 'x3' })]))!
    expect(refused.status).toBe(429)
    expect(JSON.parse(refused.body).message).toMatch(/this batch alone has 3 events from source "storefront", more than the limit allows/)
  })

  it('leaves ingest() called by the host unlimited, and the other routes too', async () => {
    const ingest = await core({ rateLimits: { perSource: { points: 1, durationSeconds: 60 }, perAddress: { points: 1, durationSeconds: 60 } } })
    expect(await ingest.ingest([makeEvent({ id: 'h1' }), makeEvent({ id: 'h2' })])).toMatchObject({ accepted: 2 })
    for (let i = 0; i < 3; i++) {
      expect((await ingest.handle({ method: 'GET', path: '/events/schema', headers: {}, remoteAddress: '10.0.0.1' }))!.status).toBe(200)
    }
  })
})

describe('rate-limiter-flexible missing', () => {
  afterEach(() => {
    vi.doUnmock('rate-limiter-flexible')
    vi.resetModules()
  })

  it('fails start with an error naming the package, and ingest answers 503 saying so', async () => {
    vi.resetModules()
    vi.doMock('rate-limiter-flexible', () => {
      throw Object.assign(new Error("Cannot find package 'rate-limiter-flexible'"), { code: 'ERR_MODULE_NOT_FOUND' })
    })
    const { createEventIngest: create } = await import('../../src/index')
    const errors: unknown[] = []
    const ingest = create({ env: {}, onError: (error) => errors.push(error), rateLimits: { perAddress: { points: 1, durationSeconds: 1 } } })
    opened.push(ingest)
    await expect(ingest.ready()).rejects.toThrow(/^\[event-ingest\] rateLimits(: the "rate-limiter-flexible" package failed to load| needs the "rate-limiter-flexible" package, which is not installed: npm install rate-limiter-flexible)/)
    const answer = (await ingest.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json' }, remoteAddress: '10.0.0.1', body: { bytes: new TextEncoder().encode('[]') } }))!
    expect(answer.status).toBe(503)
    expect(JSON.parse(answer.body).message).toMatch(/rate-limiter-flexible/)
    expect(String(errors[0])).toMatch(/rate-limiter-flexible/)
  })
})
