import { createHmac } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createEventIngest, createEventModel, createRedactor, defineEvents, resolveOptions, type EventEnvelope, type RedactionRule } from '../../src/index'
import { makeEvent as anyEvent } from '../helpers/fixtures'

const makeEvent = (overrides: Record<string, unknown> = {}) => anyEvent(overrides) as EventEnvelope

const SECRET = 'k'.repeat(32)
const hmac = (text: string, secret = SECRET) => `hmac-sha256:${createHmac('sha256', secret).update(text).digest('hex')}`

/** The payload of one OrderCreated after `rules`. */
function redactOne(rules: RedactionRule[], payload: Record<string, unknown>, secret = SECRET) {
  const model = createEventModel({ redact: rules })
  const redactor = createRedactor(model.redaction, { secret })!
  const event = makeEvent({ name: 'OrderCreated', source: 'api', payload })
  const result = redactor.redact([event])
  return { payload: result ? result.events[0]!.payload : event.payload, counts: result?.counts[0], changed: result !== undefined, input: event }
}

describe('PII redaction rules', () => {
  it.each([
    ['drop removes the key', 'drop', 'email', { email: 'a@b.c', n: 1 }, { n: 1 }, { dropped: 1, masked: 0, hashed: 0 }],
    ['mask replaces a string by ***, keeping no length', 'mask', 'email', { email: 'someone@example.com' }, { email: '***' }, { dropped: 0, masked: 1, hashed: 0 }],
    ['mask replaces a number by 0', 'mask', 'age', { age: 41 }, { age: 0 }, { dropped: 0, masked: 1, hashed: 0 }],
    ['mask replaces a boolean by false', 'mask', 'vip', { vip: true }, { vip: false }, { dropped: 0, masked: 1, hashed: 0 }],
    ['mask replaces an object by {} and an array by []', 'mask', 'address', { address: { city: 'Lyon' } }, { address: {} }, { dropped: 0, masked: 1, hashed: 0 }],
    ['mask leaves null, or a value already masked, alone: nothing to hide, nothing counted', 'mask', 'phone', { phone: null }, { phone: null }, undefined],
    ['mask turns an empty string into ***', 'mask', 'email', { email: '' }, { email: '***' }, { dropped: 0, masked: 1, hashed: 0 }],
    ['hash pseudonymises a string from its text', 'hash', 'email', { email: 'a@b.c' }, { email: hmac('a@b.c') }, { dropped: 0, masked: 0, hashed: 1 }],
    ['hash pseudonymises a number from its JSON text', 'hash', 'customerNo', { customerNo: 1234 }, { customerNo: hmac('1234') }, { dropped: 0, masked: 0, hashed: 1 }],
    ['hash pseudonymises an object from its JSON with keys sorted', 'hash', 'who', { who: { b: 2, a: [1, 'x'] } }, { who: hmac('{"a":[1,"x"],"b":2}') }, { dropped: 0, masked: 0, hashed: 1 }],
  ] as const)('%s', (_, action, path, payload, expected, counts) => {
    const result = redactOne([{ path, action }], payload)
    expect(result.payload).toEqual(expected)
    expect(result.counts).toEqual(counts)
  })

  it('follows nested paths and every element of arrays, leaving the rest and the input untouched', () => {
    const payload = {
      orderId: 'ord_1',
      customer: { email: 'a@b.c', name: 'Ann', address: { line1: '1 rue', city: 'Lyon' } },
      items: [{ sku: 'S1', giftNote: { to: 'Bob' } }, { sku: 'S2' }, 'not an object', { sku: 'S3', giftNote: { to: 'Eve' } }],
      grid: [[{ card: '4242' }], [{ card: '1111' }, 5]],
      contacts: { home: { phone: '+33 1' }, work: { phone: '+33 2', ext: 12 } },
    }
    const snapshot = structuredClone(payload)
    const result = redactOne([
      { path: 'customer.email', action: 'hash' },
      { path: 'customer.address.line1', action: 'drop' },
      { path: 'items[].giftNote.to', action: 'mask' },
      { path: 'grid[][].card', action: 'mask' },
      { path: 'contacts.*.phone', action: 'hash' },
    ], payload)
    expect(result.payload).toEqual({
      orderId: 'ord_1',
      customer: { email: hmac('a@b.c'), name: 'Ann', address: { city: 'Lyon' } },
      items: [{ sku: 'S1', giftNote: { to: '***' } }, { sku: 'S2' }, 'not an object', { sku: 'S3', giftNote: { to: '***' } }],
      grid: [[{ card: '***' }], [{ card: '***' }, 5]],
      contacts: { home: { phone: hmac('+33 1') }, work: { phone: hmac('+33 2'), ext: 12 } },
    })
    expect(result.counts).toEqual({ dropped: 1, masked: 4, hashed: 3 })
    // Copy on write: the caller's event and payload are never changed; untouched parts are shared.
    expect(payload).toEqual(snapshot)
    expect((result.payload as typeof payload).items[1]).toBe(payload.items[1])
  })

  it('masks every element of an array with a path ending in []', () => {
    expect(redactOne([{ path: 'emails[]', action: 'mask' }], { emails: ['a@b.c', 'd@e.f'] })).toMatchObject({ payload: { emails: ['***', '***'] }, counts: { masked: 2 } })
    expect(redactOne([{ path: 'contact.*', action: 'drop' }], { contact: { a: 1, b: 2 }, keep: 1 }).payload).toEqual({ contact: {}, keep: 1 })
  })

  it.each([
    ['a missing key', 'customer.email', { customer: { name: 'Ann' } }],
    ['a missing parent', 'customer.email', { orderId: 'ord_1' }],
    ['a path through a string', 'customer.email', { customer: 'Ann' }],
    ['a path through null', 'customer.email', { customer: null }],
    ['a path through an array without []', 'items.email', { items: [{ email: 'a@b.c' }] }],
    ['[] on an object', 'items[].email', { items: { email: 'a@b.c' } }],
    ['an empty array', 'items[].email', { items: [] }],
  ])('leaves the event alone on %s', (_, path, payload) => {
    const result = redactOne([{ path, action: 'hash' }], payload)
    expect(result.changed).toBe(false)
    expect(result.payload).toBe(result.input.payload)
  })

  it('is deterministic per secret, so joins work, and differs between secrets', () => {
    const rules: RedactionRule[] = [{ path: 'email', action: 'hash' }]
    const one = redactOne(rules, { email: 'a@b.c' }).payload.email
    expect(redactOne(rules, { email: 'a@b.c' }).payload.email).toBe(one)
    expect(one).toMatch(/^hmac-sha256:[0-9a-f]{64}$/)
    expect(redactOne(rules, { email: 'a@b.c' }, 'z'.repeat(32)).payload.email).not.toBe(one)
    // Never an unsalted hash of the value.
    expect(one).not.toContain(createHmac('sha256', '').update('a@b.c').digest('hex'))
  })

  it('applies drops before masks and hashes, and rules per event name or for all', () => {
    const events = defineEvents({
      SignedUp: { sources: ['api'], payload: z.object({ email: z.string(), ip: z.string().optional() }), redact: { email: 'hash', ip: 'drop' } },
    })
    const model = createEventModel({ events, redact: [{ path: 'customer', action: 'drop' }, { events: ['OrderCreated'], path: 'customer.email', action: 'hash' }, { events: ['CartUpdated'], path: 'note', action: 'mask' }] })
    const redactor = createRedactor(model.redaction, { secret: SECRET })!
    const result = redactor.redact([
      makeEvent({ name: 'OrderCreated', source: 'api', payload: { customer: { email: 'a@b.c' } } }),
      makeEvent({ name: 'SignedUp', source: 'api', payload: { email: 'a@b.c', ip: '10.0.0.1' } }),
      makeEvent({ name: 'ProductViewed', payload: { note: 'hi' } }),
    ])!
    expect(result.events.map((e) => e.payload)).toEqual([{}, { email: hmac('a@b.c') }, { note: 'hi' }])
    expect(result.counts).toEqual([{ dropped: 1, masked: 0, hashed: 0 }, { dropped: 1, masked: 0, hashed: 1 }, undefined])
    expect(model.describe().events.find((e) => e.name === 'OrderCreated')!.redact).toEqual([{ path: 'customer', action: 'drop' }, { path: 'customer.email', action: 'hash' }])
    expect(model.describe().events.find((e) => e.name === 'SignedUp')!.redact).toEqual([{ path: 'ip', action: 'drop' }, { path: 'customer', action: 'drop' }, { path: 'email', action: 'hash' }])
    expect(model.describe().events.find((e) => e.name === 'CartUpdated')!.redact).toEqual([{ path: 'customer', action: 'drop' }, { path: 'note', action: 'mask' }])
    expect(createEventModel().describe().events.every((e) => !('redact' in e))).toBe(true)
    expect(createRedactor(createEventModel().redaction)).toBeUndefined()
  })

  it.each([
    ['an empty path', [{ path: '', action: 'mask' }], /redact\[0\]\.path must be a non-empty payload path/],
    ['a path with an empty segment', [{ path: 'a..b', action: 'mask' }], /redact\[0\]\.path: "a\.\.b" is not a payload path/],
    ['a path with a bracket inside a key', [{ path: 'a[0].b', action: 'mask' }], /redact\[0\]\.path: "a\[0\]\.b" is not a payload path/],
    ['a prototype key', [{ path: 'a.__proto__', action: 'mask' }], /redact\[0\]\.path: "a\.__proto__" names "__proto__"/],
    ['an unknown action', [{ path: 'a', action: 'encrypt' }], /redact\[0\]\.action must be "drop", "mask" or "hash", got "encrypt"/],
    ['an unknown event', [{ events: ['Nope'], path: 'a', action: 'mask' }], /redact\[0\]\.events names "Nope", which is not an event of the model/],
    ['an empty events list', [{ events: [], path: 'a', action: 'mask' }], /redact\[0\]\.events must be "\*" or a non-empty array of event names/],
    ['an unknown key', [{ path: 'a', action: 'mask', when: 'always' }], /redact\[0\] has unknown key "when"/],
    ['a drop of array elements', [{ path: 'items[]', action: 'drop' }], /redact\[0\]: "items\[\]" cannot be dropped element by element; drop the array \("items"\)/],
    ['one path with two actions', [{ path: 'a', action: 'mask' }, { events: ['OrderCreated'], path: 'a', action: 'hash' }], /redact\[1\]: OrderCreated's "a" is already redacted with "mask" \(redact\[0\]\)/],
    ['not an array', { path: 'a', action: 'mask' }, /redact must be an array/],
  ])('refuses %s when the model is created, naming the rule', (_, redact, message) => {
    expect(() => createEventModel({ redact: redact as never })).toThrow(message)
  })

  it("refuses a definition's bad redact map, naming the event", () => {
    expect(() => createEventModel({ events: { X: { sources: ['api'], redact: { 'a b.': 'mask' } } } })).toThrow(/X\.redact\["a b\."\]\.path: "a b\." is not a payload path/)
    expect(() => createEventModel({ events: { X: { sources: ['api'], redact: { a: 'wipe' as never } } } })).toThrow(/X\.redact\["a"\]\.action must be "drop", "mask" or "hash", got "wipe"/)
    expect(() => createEventModel({ events: { X: { sources: ['api'], redact: ['a'] as never } } })).toThrow(/the redact of X must be an object of payload path/)
  })
})

describe('the redaction option', () => {
  const hashing = createEventModel({ redact: [{ events: ['OrderCreated'], path: 'customer.email', action: 'hash' }] })

  it('requires a secret of at least 32 bytes when the model hashes, naming the option and its variable', () => {
    expect(() => resolveOptions({ env: {}, model: hashing })).toThrow(/redaction\.secret is required: the model pseudonymises OrderCreated customer\.email with HMAC-SHA-256; set redaction\.secret or EVENT_REDACTION_SECRET \(at least 32 bytes\)/)
    expect(() => resolveOptions({ env: {}, model: hashing, redaction: { secret: 'k'.repeat(31) } })).toThrow(/redaction\.secret must be at least 32 bytes .*got 31/)
    expect(resolveOptions({ env: {}, model: hashing, redaction: { secret: 'k'.repeat(32) } }).redaction).toBeDefined()
    // Bytes, not characters: 11 three-byte characters are 33 bytes.
    expect(resolveOptions({ env: {}, model: hashing, redaction: { secret: '€'.repeat(11) } }).redaction).toBeDefined()
    expect(() => resolveOptions({ env: { EVENT_REDACTION_SECRET: 'short' }, model: hashing })).toThrow(/EVENT_REDACTION_SECRET: the secret must be at least 32 bytes .*got 5/)
    expect(resolveOptions({ env: { EVENT_REDACTION_SECRET: SECRET }, model: hashing }).redaction).toBeDefined()
    expect(() => resolveOptions({ env: {}, redaction: { secret: 42 } as never })).toThrow(/redaction\.secret must be a string, got 42/)
    expect(() => resolveOptions({ env: {}, redaction: { key: SECRET } as never })).toThrow(/redaction/)
    expect(() => resolveOptions({ env: {}, redaction: 'on' as never })).toThrow(/redaction must be an object/)
  })

  it('needs no secret for drop and mask rules, and nothing at all without rules', () => {
    expect(resolveOptions({ env: {}, model: createEventModel({ redact: [{ path: 'email', action: 'mask' }] }) }).redaction).toBeDefined()
    expect(resolveOptions({ env: {} }).redaction).toBeUndefined()
  })

  it('stores and counts the redacted events, and publishes the rules without the secret', async () => {
    const ingest = createEventIngest({ env: {}, model: hashing, redaction: { secret: SECRET } })
    const event = makeEvent({ id: 'r-1', name: 'OrderCreated', source: 'api', payload: { orderId: 'o', customer: { email: 'a@b.c' } } })
    expect(await ingest.ingest([event, makeEvent({ id: 'r-2', name: 'OrderCreated', source: 'api', payload: {} })])).toMatchObject({ accepted: 2 })
    expect(await ingest.ingest([event])).toMatchObject({ duplicates: 1 })
    const stored = (await ingest.events()).events.find((e) => e.id === 'r-1')!
    expect(stored.payload).toEqual({ orderId: 'o', customer: { email: hmac('a@b.c') } })
    expect(event.payload).toEqual({ orderId: 'o', customer: { email: 'a@b.c' } })
    // Duplicates were not stored again: they are not counted again.
    expect((await ingest.stats()).redacted).toEqual({ events: 1, dropped: 0, masked: 0, hashed: 1 })
    expect(JSON.stringify(ingest.schema())).not.toContain(SECRET)
    await ingest.close()
  })
})
