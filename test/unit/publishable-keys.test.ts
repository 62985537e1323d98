import { describe, expect, it } from 'vitest'
import { createEventIngest, resolveOptions } from 'event-ingest'
import { makeEvent } from '../helpers/fixtures'

const KEY = 'pk_' + 'a'.repeat(16) // the shortest key: "pk_" and 16 characters
const shop = { id: 'shop', key: KEY, sources: ['storefront'], origins: ['https://shop.example'] } as const
const keys = (entry: Record<string, unknown>) => ({ publishableKeys: [{ ...shop, ...entry }] as never })

describe('publishableKeys option', () => {
  it('takes keys from the option, or as JSON from EVENT_PUBLISHABLE_KEYS; the option wins', () => {
    expect(resolveOptions({}, {}).publishableKeys).toEqual([])
    expect(resolveOptions({ publishableKeys: [shop] }, {}).publishableKeys).toEqual([shop])
    const env = { EVENT_PUBLISHABLE_KEYS: JSON.stringify([{ ...shop, id: 'from-env' }]) }
    expect(resolveOptions({}, env).publishableKeys.map((k) => k.id)).toEqual(['from-env'])
    expect(resolveOptions({ publishableKeys: [shop] }, env).publishableKeys.map((k) => k.id)).toEqual(['shop'])
    expect(resolveOptions({}, { EVENT_PUBLISHABLE_KEYS: '' }).publishableKeys).toEqual([])
    expect(Object.isFrozen(resolveOptions({ publishableKeys: [shop] }, {}).publishableKeys[0])).toBe(true)
  })

  it('refuses EVENT_PUBLISHABLE_KEYS that is not JSON, or holds a bad key, naming the variable', () => {
    expect(() => resolveOptions({}, { EVENT_PUBLISHABLE_KEYS: 'pk_abc' })).toThrow(/^\[event-ingest\] EVENT_PUBLISHABLE_KEYS must be a JSON array of \{ id, key, sources, origins \}/)
    expect(() => resolveOptions({}, { EVENT_PUBLISHABLE_KEYS: '{}' })).toThrow(/EVENT_PUBLISHABLE_KEYS must be an array/)
    expect(() => resolveOptions({}, { EVENT_PUBLISHABLE_KEYS: JSON.stringify([{ ...shop, sources: ['web'] }]) })).toThrow(/EVENT_PUBLISHABLE_KEYS\[0\]\.sources: expected one of/)
  })

  it('takes a key of "pk_" and 16 characters, refuses 15, another prefix or characters a URL would need encoded, never showing the key', () => {
    expect(() => resolveOptions(keys({ key: KEY }), {})).not.toThrow()
    expect(() => resolveOptions(keys({ key: 'pk_' + 'a'.repeat(253) }), {})).not.toThrow()
    for (const key of ['pk_' + 'a'.repeat(15), 'pk_' + 'a'.repeat(254), 'sk_' + 'a'.repeat(16), 'pk_' + 'a'.repeat(15) + '+', 'pk_' + 'a'.repeat(15) + '%']) {
      let message = ''
      try {
        resolveOptions(keys({ key }), {})
      } catch (error) {
        message = (error as Error).message
      }
      expect(message, key).toMatch(/^\[event-ingest\] publishableKeys\[0\]\.key must be "pk_" and 16 to 253/)
      expect(message).not.toContain(key)
    }
    expect(() => resolveOptions(keys({ key: 42 }), {})).toThrow(TypeError)
  })

  it('refuses a key that is also a secret token, two entries with one id or one key', () => {
    expect(() => resolveOptions({ token: KEY, ...keys({}) }, {})).toThrow(/publishableKeys\[0\]\.key is also a secret ingest token/)
    expect(() => resolveOptions({ ...keys({}) }, { EVENT_INGEST_TOKEN: `other,${KEY}` })).toThrow(/is also a secret ingest token/)
    expect(() => resolveOptions({ publishableKeys: [shop, { ...shop, key: KEY + 'b' }] }, {})).toThrow(/publishableKeys\[1\]\.id: "shop" names two keys/)
    expect(() => resolveOptions({ publishableKeys: [shop, { ...shop, id: 'b' }] }, {})).toThrow(/publishableKeys\[1\]\.key is the key of another entry/)
  })

  it('checks ids, sources and origins, naming the field', () => {
    expect(() => resolveOptions(keys({ id: '' }), {})).toThrow(/publishableKeys\[0\]\.id must be 1-64/)
    expect(() => resolveOptions(keys({ id: 'x'.repeat(64) }), {})).not.toThrow()
    expect(() => resolveOptions(keys({ id: 'x'.repeat(65) }), {})).toThrow(/publishableKeys\[0\]\.id must be 1-64/)
    expect(() => resolveOptions(keys({ sources: [] }), {})).toThrow(/publishableKeys\[0\]\.sources must be a non-empty array/)
    expect(() => resolveOptions(keys({ sources: ['storefront', 'web'] }), {})).toThrow(/publishableKeys\[0\]\.sources: expected one of storefront, admin, api, bot, agent, got "web"/)
    expect(() => resolveOptions(keys({ origins: [] }), {})).toThrow(/publishableKeys\[0\]\.origins must be a non-empty array/)
    for (const origin of ['https://shop.example/', 'https://shop.example/path', 'shop.example', 'https://SHOP.example', 'ftp://shop.example', 'https://shop.example:443']) {
      expect(() => resolveOptions(keys({ origins: [origin] }), {}), origin).toThrow(/publishableKeys\[0\]\.origins: .* is not an origin/)
    }
    expect(() => resolveOptions(keys({ origins: ['*'] }), {})).not.toThrow()
    expect(() => resolveOptions(keys({ origins: ['http://localhost:3000', 'https://shop.example'] }), {})).not.toThrow()
    expect(() => resolveOptions(keys({ secret: true }), {})).toThrow(/publishableKeys\[0\]\.secret is not an option/)
    expect(() => resolveOptions({ publishableKeys: 'pk_x' as never }, {})).toThrow(/publishableKeys must be an array/)
    expect(() => resolveOptions({ publishableKey: [shop] } as never, {})).toThrow(/publishableKey is not an option \(did you mean publishableKeys\?\)/)
  })

  it('closes an open ingest: with keys and no token, a request needs a key', async () => {
    const ingest = createEventIngest({ env: {}, ...keys({}) })
    try {
      const post = (query: string) => ingest.handle({ method: 'POST', path: '/events/ingest', query, headers: { 'content-type': 'text/plain' }, body: { bytes: JSON.stringify([makeEvent()]) } })
      expect((await post(''))?.status).toBe(401)
      expect((await post(`key=${KEY}`))?.status).toBe(200)
    } finally {
      await ingest.close()
    }
  })
})

describe('ingest(events, { key }) without HTTP', () => {
  it("rejects each event of a source outside the key's, by its index, and stores the rest", async () => {
    const ingest = createEventIngest({ env: {} })
    try {
      const result = await ingest.ingest([makeEvent({ id: 'k1' }), makeEvent({ id: 'k2', name: 'OrderCreated', source: 'api', payload: { orderId: 'o' } })], { key: { id: 'shop', sources: ['storefront'] } })
      expect(result).toEqual({ accepted: 1, duplicates: 0, rejected: [{ index: 1, id: 'k2', errors: [{ path: 'source', message: 'source: publishable key "shop" may send storefront events only, got "api"' }] }] })
      expect((await ingest.events()).events.map((e) => e.id)).toEqual(['k1'])
      expect((await ingest.stats()).totals.rejected).toBe(1)
    } finally {
      await ingest.close()
    }
  })
})

describe('a body key behind a host parser that kept text or bytes', () => {
  it('reads {"key", "events"} from a parsed string and from parsed bytes, and refuses a secret token there', async () => {
    const ingest = createEventIngest({ env: {}, token: 'secret-token-1', ...keys({}) })
    try {
      const post = (parsed: unknown) => ingest.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'text/plain', origin: 'https://shop.example' }, body: { parsed } })
      const text = await post(JSON.stringify({ key: KEY, events: [makeEvent({ id: 'parsed-text' })] }))
      expect(text?.status).toBe(200)
      expect(text?.headers['access-control-allow-origin']).toBe('https://shop.example')
      const bytes = await post(Buffer.from(JSON.stringify({ key: KEY, events: [makeEvent({ id: 'parsed-bytes' }), makeEvent({ id: 'parsed-api', source: 'api', name: 'OrderCreated', payload: { orderId: 'o' } })] })))
      expect(bytes?.status).toBe(200)
      expect(JSON.parse(bytes!.body)).toMatchObject({ accepted: 1, rejected: [{ index: 1, errors: [{ path: 'source' }] }] })
      const secret = await post(JSON.stringify({ key: 'secret-token-1', events: [] }))
      expect(secret?.status).toBe(401)
      expect(JSON.parse(secret!.body).code).toBe('token_not_allowed')
      expect(secret!.body).not.toContain('secret-token-1')
      expect((await ingest.events()).events.map((e) => e.id).sort()).toEqual(['parsed-bytes', 'parsed-text'])
    } finally {
      await ingest.close()
    }
  })
})
