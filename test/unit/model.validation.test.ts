import { z } from 'zod'
import { describe, expect, it } from 'vitest'
import { IngestError, createEventModel, parseBatchBytes, type EventModel } from 'event-ingest'
import { makeEvent } from '../helpers/fixtures'

const model = createEventModel()

function errorsOf(event: unknown, m: EventModel<any> = model) {
  const result = m.validateBatch([event])
  expect(result.events).toHaveLength(0)
  expect(result.rejected).toHaveLength(1)
  return result.rejected[0]!.errors
}

function thrown(fn: () => unknown): IngestError {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(IngestError)
    return error as IngestError
  }
  throw new Error('expected an IngestError')
}

describe('field rejections name the field and what came', () => {
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ['missing id', { id: undefined }, 'id', /^id: is required$/],
    ['empty id', { id: '' }, 'id', /^id: must not be empty$/],
    ['numeric id', { id: 42 }, 'id', /^id: expected a string, got 42$/],
    ['missing name', { name: undefined }, 'name', /^name: is required$/],
    ['unknown name', { name: 'OrderDeleted' }, 'name', /^name: unknown event name "OrderDeleted"; registered names are OrderCreated, .*DashboardViewed$/],
    ['non-string name', { name: ['OrderCreated'] }, 'name', /^name: expected a string, got an array$/],
    ['missing schemaVersion', { schemaVersion: undefined }, 'schemaVersion', /^schemaVersion: is required$/],
    ['string schemaVersion', { schemaVersion: '1' }, 'schemaVersion', /^schemaVersion: expected a number, got "1"$/],
    ['fractional schemaVersion', { schemaVersion: 1.5 }, 'schemaVersion', /^schemaVersion: expected an integer, got 1\.5$/],
    ['zero schemaVersion', { schemaVersion: 0 }, 'schemaVersion', /^schemaVersion: must be at least 1, got 0$/],
    ['newer schemaVersion', { schemaVersion: 2 }, 'schemaVersion', /^schemaVersion: 2 is newer than the newest supported version 1$/],
    ['words for occurredAt', { occurredAt: 'yesterday' }, 'occurredAt', /^occurredAt: expected an ISO 8601 timestamp .*, got "yesterday"$/],
    ['occurredAt without zone', { occurredAt: '2026-11-02T14:03:11' }, 'occurredAt', /^occurredAt: expected an ISO 8601 timestamp/],
    ['date-only occurredAt', { occurredAt: '2026-11-02' }, 'occurredAt', /^occurredAt: expected an ISO 8601 timestamp/],
    ['impossible month', { occurredAt: '2026-13-02T14:03:11Z' }, 'occurredAt', /^occurredAt: expected an ISO 8601 timestamp/],
    ['epoch number occurredAt', { occurredAt: 1762092191000 }, 'occurredAt', /^occurredAt: expected a string, got 1762092191000$/],
    ['missing occurredAt', { occurredAt: undefined }, 'occurredAt', /^occurredAt: is required$/],
    ['unknown source', { source: 'web' }, 'source', /^source: expected one of storefront, admin, api, bot, agent, got "web"$/],
    ['source not expected for the name', { name: 'OrderCreated', source: 'storefront' }, 'source', /^source: OrderCreated is expected from api, got "storefront"$/],
    ['numeric companyId', { companyId: 7 }, 'companyId', /^companyId: expected a string, got 7$/],
    ['empty companyId', { companyId: '' }, 'companyId', /^companyId: must not be empty$/],
    ['null subjectId', { subjectId: null }, 'subjectId', /^subjectId: expected a string, got null$/],
    ['missing payload', { payload: undefined }, 'payload', /^payload: is required$/],
    ['array payload', { payload: [1, 2] }, 'payload', /^payload: expected a JSON object, got an array$/],
    ['string payload', { payload: 'hello' }, 'payload', /^payload: expected a JSON object, got "hello"$/],
    ['null payload', { payload: null }, 'payload', /^payload: expected a JSON object, got null$/],
  ]
  it.each(cases)('%s', (_label, overrides, path, message) => {
    const errors = errorsOf(makeEvent(overrides))
    const error = errors.find((e) => e.path === path)
    expect(error, JSON.stringify(errors)).toBeDefined()
    expect(error!.message).toMatch(message)
  })

  it('reports every wrong field of one event, not just the first', () => {
    const errors = errorsOf(makeEvent({ id: '', occurredAt: 'soon', payload: 3 }))
    expect(errors.map((e) => e.path).sort()).toEqual(['id', 'occurredAt', 'payload'])
  })

  it('rejects events that are not objects, naming what came', () => {
    const result = model.validateBatch([42, 'x', null, [makeEvent()]])
    expect(result.rejected.map((r) => r.errors[0]!.message)).toEqual([
      'an event must be a JSON object, got 42',
      'an event must be a JSON object, got "x"',
      'an event must be a JSON object, got null',
      'an event must be a JSON object, got an array',
    ])
  })

  it('accepts any source under the accept policy, and rejects it by default', () => {
    const event = makeEvent({ name: 'AgentHeartbeat', source: 'storefront' })
    expect(model.validateBatch([event]).rejected).toHaveLength(1)
    const lenient = createEventModel({ sourcePolicy: 'accept' })
    expect(lenient.validateBatch([event]).events).toHaveLength(1)
    // The policy covers expected sources only: an unknown source is always rejected.
    expect(lenient.validateBatch([makeEvent({ source: 'web' })]).rejected).toHaveLength(1)
  })
})

describe('mixed batches', () => {
  it('keeps the valid events, and reports each invalid one with its index and id', () => {
    const good1 = makeEvent({ id: 'good-1' })
    const good2 = makeEvent({ id: 'good-2', name: 'OrderCreated', source: 'api' })
    const result = model.validateBatch([good1, makeEvent({ id: 'bad-1', source: 'web' }), 17, good2, makeEvent({ id: 5 })])
    expect(result.events.map((e) => e.id)).toEqual(['good-1', 'good-2'])
    expect(result.indexes).toEqual([0, 3])
    expect(result.rejected.map(({ index, id }) => ({ index, id }))).toEqual([
      { index: 1, id: 'bad-1' },
      { index: 2, id: undefined },
      { index: 4, id: undefined },
    ])
    expect(Object.hasOwn(result.rejected[1]!, 'id')).toBe(false)
  })

  it('accepts an empty batch', () => {
    expect(model.validateBatch([])).toEqual({ events: [], indexes: [], rejected: [], times: [] })
  })

  it('refuses a value that is not an array', () => {
    const error = thrown(() => model.validateBatch({ events: [] }))
    expect(error.code).toBe('not_an_array')
    expect(error.status).toBe(400)
    expect(error.message).toBe('body must be a JSON array of events, got an object')
  })
})

describe('limits at their value and one over', () => {
  it('id: maxIdLength characters pass, one more is rejected', () => {
    const m = createEventModel({ limits: { maxIdLength: 10 } })
    expect(m.validateBatch([makeEvent({ id: 'a'.repeat(10) })]).events).toHaveLength(1)
    expect(errorsOf(makeEvent({ id: 'a'.repeat(11) }), m)[0]!.message).toBe('id: must be at most 10 characters, got 11')
    expect(model.validateBatch([makeEvent({ id: 'x'.repeat(128) })]).events).toHaveLength(1)
    expect(errorsOf(makeEvent({ id: 'x'.repeat(129) }))[0]!.message).toBe('id: must be at most 128 characters, got 129')
  })

  it('companyId and subjectId: maxRefLength characters pass, one more is rejected', () => {
    const m = createEventModel({ limits: { maxRefLength: 8 } })
    expect(m.validateBatch([makeEvent({ companyId: 'c'.repeat(8), subjectId: 's'.repeat(8) })]).events).toHaveLength(1)
    expect(errorsOf(makeEvent({ companyId: 'c'.repeat(9) }), m)[0]!.message).toBe('companyId: must be at most 8 characters, got 9')
    expect(errorsOf(makeEvent({ subjectId: 's'.repeat(9) }), m)[0]!.message).toBe('subjectId: must be at most 8 characters, got 9')
  })

  it('events per batch: maxEvents pass, one more is refused with 413 naming the limit', () => {
    const m = createEventModel({ limits: { maxEvents: 5 } })
    expect(m.validateBatch(Array.from({ length: 5 }, () => makeEvent())).events).toHaveLength(5)
    const error = thrown(() => m.validateBatch(Array.from({ length: 6 }, () => makeEvent())))
    expect(error.code).toBe('too_many_events')
    expect(error.status).toBe(413)
    expect(error.details).toEqual({ limit: 'maxEvents', value: 5 })
    expect(error.message).toBe('a batch of 6 events is over the maxEvents limit of 5')
  })

  it('event bytes: an event of exactly maxEventBytes passes, one byte more is refused', () => {
    const base = makeEvent({ id: 'sized', payload: { pad: '' } })
    const baseSize = Buffer.byteLength(JSON.stringify(base))
    const limit = 600
    const exact = { ...base, payload: { pad: 'p'.repeat(limit - baseSize) } }
    expect(Buffer.byteLength(JSON.stringify(exact))).toBe(limit)
    const m = createEventModel({ limits: { maxEventBytes: limit } })
    expect(m.validateBatch([exact]).events).toHaveLength(1)
    const over = { ...base, payload: { pad: 'p'.repeat(limit - baseSize + 1) } }
    const error = thrown(() => m.validateBatch([makeEvent(), over]))
    expect(error.code).toBe('event_too_large')
    expect(error.status).toBe(413)
    expect(error.details).toEqual({ limit: 'maxEventBytes', value: limit, index: 1, id: 'sized' })
  })

  it('event bytes count UTF-8 bytes, not characters', () => {
    const base = makeEvent({ id: 'utf8', payload: { pad: '' } })
    const baseSize = Buffer.byteLength(JSON.stringify(base))
    const m = createEventModel({ limits: { maxEventBytes: baseSize + 4 } })
    expect(m.validateBatch([{ ...base, payload: { pad: 'éé' } }]).events).toHaveLength(1) // 4 bytes
    expect(() => m.validateBatch([{ ...base, payload: { pad: 'ééé' } }])).toThrow(/maxEventBytes/)
  })

  it('event bytes measured on raw bodies match the serialised size', () => {
    const limit = 500
    const m = createEventModel({ limits: { maxEventBytes: limit } })
    const base = makeEvent({ id: 'raw', payload: { pad: '' } })
    const baseSize = Buffer.byteLength(JSON.stringify(base))
    const exact = { ...base, payload: { pad: 'ü'.repeat((limit - baseSize) / 2) } }
    const over = { ...base, payload: { pad: `${'ü'.repeat((limit - baseSize) / 2)}x` } }
    const ok = parseBatchBytes(Buffer.from(JSON.stringify([exact, exact])), 32)
    expect(ok.sizes).toEqual([limit, limit])
    expect(m.validateBatch(ok.value, ok).events).toHaveLength(2)
    const bad = parseBatchBytes(Buffer.from(JSON.stringify([exact, over])), 32)
    expect(() => m.validateBatch(bad.value, bad)).toThrow(/event 1 \(501 bytes\) is over the maxEventBytes limit of 500/)
  })

  it('depth: maxDepth levels pass, one more is refused (array is 1, event is 2)', () => {
    const m = createEventModel({ limits: { maxDepth: 6 } })
    const nest = (levels: number): unknown => (levels === 0 ? 1 : { n: nest(levels - 1) })
    // array(1) > event(2) > payload(3) > 3 more objects = 6
    const ok = makeEvent({ payload: nest(4) })
    expect(m.validateBatch([ok]).events).toHaveLength(1)
    const deep = makeEvent({ payload: nest(5) })
    const error = thrown(() => m.validateBatch([deep]))
    expect(error.code).toBe('too_deep')
    expect(error.status).toBe(400)
    expect(error.details).toEqual({ limit: 'maxDepth', value: 6 })
    // The same boundary holds when the batch is parsed from bytes.
    const parsed = parseBatchBytes(Buffer.from(JSON.stringify([ok])), 6)
    expect(m.validateBatch(parsed.value, parsed).events).toHaveLength(1)
    expect(() => parseBatchBytes(Buffer.from(JSON.stringify([deep])), 6)).toThrow(/maxDepth limit of 6/)
  })

  it('refuses a body nested 100,000 deep with too_deep (no stack overflow)', () => {
    const bomb = Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`)
    expect(() => parseBatchBytes(bomb, 32)).toThrow(expect.objectContaining({ code: 'too_deep', status: 400 }))
    const objects = Buffer.from(`[${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}]`)
    expect(() => parseBatchBytes(objects, 32)).toThrow(expect.objectContaining({ code: 'too_deep', status: 400 }))
  })

  it('measures element sizes only when the body could hold one over maxEventBytes', () => {
    const m = createEventModel({ limits: { maxEventBytes: 400 } })
    const small = makeEvent({ id: 'fits', payload: { pad: '' } })
    const size = Buffer.byteLength(JSON.stringify(small))
    const exact = { ...small, payload: { pad: 'x'.repeat(400 - size) } }
    // The body less its brackets is 400 bytes: no element can be over the limit.
    const fits = parseBatchBytes(Buffer.from(JSON.stringify([exact])), 32, 400)
    expect(fits.sizes).toEqual([])
    expect(fits.sizeBound).toBe(400)
    expect(m.validateBatch(fits.value, fits).events).toHaveLength(1)
    const over = { ...exact, payload: { pad: 'x'.repeat(401 - size) } }
    const measured = parseBatchBytes(Buffer.from(JSON.stringify([over])), 32, 400)
    expect(measured.sizes).toEqual([401])
    expect(() => m.validateBatch(measured.value, measured)).toThrow(/event 0 \(401 bytes\) is over the maxEventBytes limit of 400/)
    // A bound over the limit without sizes: each element is measured by serialising it.
    expect(() => m.validateBatch(measured.value, { ...measured, sizes: [] })).toThrow(/event 0 \(401 bytes\)/)
  })

  it('checks depth and prototype keys while a host has an enumerable property on Object.prototype', () => {
    const m = createEventModel({ limits: { maxDepth: 6 } })
    const nest = (levels: number): unknown => (levels === 0 ? 1 : { n: nest(levels - 1) })
    const proto = Object.prototype as Record<string, unknown>
    proto.hostExtra = { nested: { deeper: { deepest: {} } } }
    try {
      const ok = parseBatchBytes(Buffer.from(JSON.stringify([makeEvent({ id: 'ok', payload: nest(4) })])), 6)
      expect(m.validateBatch(ok.value, ok).events.map((e) => e.id)).toEqual(['ok'])
      expect(() => parseBatchBytes(Buffer.from(JSON.stringify([makeEvent({ payload: nest(5) })])), 6)).toThrow(/maxDepth limit of 6/)
      const polluted = parseBatchBytes(Buffer.from(`[${JSON.stringify(makeEvent({ id: 'p' })).replace('"payload":{', '"payload":{"__proto__":{"x":1},')}]`), 6)
      expect(m.validateBatch(polluted.value, polluted).rejected[0]!.errors[0]!.path).toBe('payload.__proto__')
    } finally {
      delete proto.hostExtra
    }
  })

  it('rejects invalid limit options clearly', () => {
    expect(() => createEventModel({ limits: { maxEvents: 0 } })).toThrow('limits.maxEvents must be a positive integer, got 0')
    expect(() => createEventModel({ limits: { maxIdLength: 1.5 } })).toThrow(/maxIdLength/)
    expect(() => createEventModel({ limits: { maxDepth: 1 } })).toThrow(/maxDepth must be at least 2/)
  })
})

describe('prototype keys never reach host objects', () => {
  const raw = (json: string) => {
    const parsed = parseBatchBytes(Buffer.from(json), 32)
    return model.validateBatch(parsed.value, parsed)
  }
  const event = (extra: string) => `{"id":"p1","name":"ProductViewed","schemaVersion":1,"occurredAt":"2026-11-02T10:00:00Z","source":"storefront","payload":{"a":1${extra}}}`

  it('rejects __proto__ in a payload, naming its path', () => {
    const result = raw(`[${event(',"__proto__":{"polluted":true}')}]`)
    expect(result.events).toHaveLength(0)
    expect(result.rejected[0]!.errors[0]!.path).toBe('payload.__proto__')
    expect(({} as any).polluted).toBeUndefined()
  })

  it('rejects __proto__ at the top of an event and when written with escapes', () => {
    const top = raw('[{"__proto__":{"polluted":true},"id":"p2","name":"ProductViewed","schemaVersion":1,"occurredAt":"2026-11-02T10:00:00Z","source":"storefront","payload":{}}]')
    expect(top.rejected[0]!.errors[0]!.path).toBe('__proto__')
    expect(top.rejected[0]!.id).toBe('p2')
    const escaped = raw(`[${event(',"\\u005f_proto__":{"polluted":true}')}]`)
    expect(escaped.rejected[0]!.errors[0]!.path).toBe('payload.__proto__')
    expect(({} as any).polluted).toBeUndefined()
  })

  it('rejects constructor.prototype, and allows a plain constructor key', () => {
    const bad = raw(`[${event(',"constructor":{"prototype":{"polluted":true}}')}]`)
    expect(bad.rejected[0]!.errors[0]!.path).toBe('payload.constructor')
    const fine = raw(`[${event(',"constructor":"Acme Builders"')}]`)
    expect(fine.events).toHaveLength(1)
    expect(fine.events[0]!.payload.constructor).toBe('Acme Builders')
  })

  it("returns copies of the caller's objects, and the parsed objects themselves only for a body parsed here", () => {
    // Canonical already (milliseconds, Z): nothing to normalise, so only aliasing is in question.
    const body = `[${event('').replace('10:00:00Z', '10:00:00.000Z')}]`
    const given = JSON.parse(body)
    const copied = model.validateBatch(given)
    expect(copied.events[0]).toEqual(given[0])
    expect(copied.events[0]).not.toBe(given[0])
    const parsed = parseBatchBytes(Buffer.from(body), 32)
    expect(model.validateBatch(parsed.value, parsed).events[0]).toBe((parsed.value as unknown[])[0])
  })

  it('checks pre-parsed values too (a body parsed by the host)', () => {
    const input = JSON.parse(`[${event(',"nested":{"__proto__":{"x":1}}')}]`)
    const result = model.validateBatch(input)
    expect(result.rejected[0]!.errors[0]!.path).toBe('payload.nested.__proto__')
  })

  it('keeps the valid events of a batch that has a polluted one', () => {
    const result = raw(`[${event('')},${event(',"__proto__":{"x":1}').replace('"p1"', '"p9"')}]`)
    expect(result.events.map((e) => e.id)).toEqual(['p1'])
    expect(result.rejected.map((r) => r.id)).toEqual(['p9'])
  })
})

describe('raw body parsing', () => {
  it('rejects malformed JSON with 400 invalid_json', () => {
    const error = thrown(() => parseBatchBytes(Buffer.from('[{"id":'), 32))
    expect(error.code).toBe('invalid_json')
    expect(error.status).toBe(400)
    expect(error.message).toMatch(/^body is not valid JSON: /)
  })

  it('rejects JSON that is not an array with 400 not_an_array', () => {
    for (const body of ['{"id":"x"}', '"x"', '42', 'null']) {
      expect(() => parseBatchBytes(Buffer.from(body), 32)).toThrow(expect.objectContaining({ code: 'not_an_array', status: 400 }))
    }
  })

  it('measures every element, including strings with brackets and escapes', () => {
    const items = [{ a: '[{"}]' }, 'str,]', 12, { b: [1, { c: '\\"' }] }, null]
    const parsed = parseBatchBytes(Buffer.from(JSON.stringify(items)), 32)
    expect(parsed.sizes).toEqual(items.map((i) => Buffer.byteLength(JSON.stringify(i))))
    const spaced = parseBatchBytes(Buffer.from('[ {"a":1} ,\n {"b":2}\n]'), 32)
    expect(spaced.sizes).toEqual([7, 7])
  })

  it('accepts a UTF-8 byte order mark', () => {
    const parsed = parseBatchBytes(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('[]')]), 32)
    expect(parsed.value).toEqual([])
  })
})

describe('host-defined events', () => {
  const host = createEventModel({
    events: {
      RefundIssued: { sources: ['api', 'admin'], payload: z.object({ orderId: z.string(), amount: z.number().positive() }) },
    },
  })

  it('accepts a registered event with a valid payload', () => {
    const result = host.validateBatch([makeEvent({ name: 'RefundIssued', source: 'api', payload: { orderId: 'o1', amount: 5 } })])
    expect(result.events).toHaveLength(1)
  })

  it('rejects a payload that fails its schema, with paths inside payload', () => {
    const errors = errorsOf(makeEvent({ name: 'RefundIssued', source: 'admin', payload: { orderId: 7, amount: -1 } }), host)
    expect(errors).toEqual([
      { path: 'payload.orderId', message: 'payload.orderId: expected a string, got 7' },
      { path: 'payload.amount', message: expect.stringMatching(/^payload\.amount: /) },
    ])
  })

  it('refuses invalid definitions clearly', () => {
    expect(() => createEventModel({ events: { 'bad name': { sources: ['api'] } } })).toThrow(/event name "bad name"/)
    expect(() => createEventModel({ events: { Thing: { sources: [] } } })).toThrow(/needs at least one source/)
    expect(() => createEventModel({ events: { Thing: { sources: ['web' as 'api'] } } })).toThrow(/unknown source "web"/)
  })

  it('can drop the canonical events', () => {
    const only = createEventModel({ canonical: false, events: { Ping: { sources: ['agent'] } } })
    expect(only.names).toEqual(['Ping'])
    expect(errorsOf(makeEvent(), only)[0]!.path).toBe('name')
  })
})

describe('values parsed by a host', () => {
  it('refuses a value nested far too deeply with too_deep, not a stack overflow', () => {
    let deep: unknown = 1
    for (let i = 0; i < 20_000; i++) deep = [deep]
    const error = thrown(() => model.validateBatch([makeEvent({ payload: { deep } })]))
    expect(error.code).toBe('too_deep')
  })
})

describe('occurredAt within years 0000-9999 once in UTC', () => {
  // Each lane of validation: one event, a batch of objects, and a batch of bytes (the ingest route's).
  function lanes(occurredAt: string) {
    const event = makeEvent({ id: `t-${occurredAt}`, occurredAt })
    const bytes = parseBatchBytes(Buffer.from(JSON.stringify([event])), 32)
    return [model.validateEvent(event), model.validateBatch([event]), model.validateBatch(bytes.value, bytes)] as const
  }

  it.each([
    ['0000-01-01T00:00:00Z', '0000-01-01T00:00:00.000Z'],
    ['0000-01-01T00:00:00.000Z', '0000-01-01T00:00:00.000Z'],
    ['0000-01-01T01:00:00+01:00', '0000-01-01T00:00:00.000Z'],
    ['9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'],
    ['9999-12-31T22:59:59.999-01:00', '9999-12-31T23:59:59.999Z'],
  ])('accepts %s at the edge of the range', (occurredAt, stored) => {
    const [one, objects, bytes] = lanes(occurredAt)
    expect(one.ok && one.event.occurredAt).toBe(stored)
    expect(objects.events.map((e) => e.occurredAt)).toEqual([stored])
    expect(bytes.events.map((e) => e.occurredAt)).toEqual([stored])
  })

  it.each([
    ['0000-01-01T00:30:00+01:00', '-000001-12-31T23:30:00.000Z'],
    ['0000-01-01T00:59:59.999+01:00', '-000001-12-31T23:59:59.999Z'],
    ['9999-12-31T23:30:00-01:00', '+010000-01-01T00:30:00.000Z'],
    ['9999-12-31T23:59:59.999-00:01', '+010000-01-01T00:00:59.999Z'],
  ])('rejects %s, which is %s in UTC, naming occurredAt and why', (occurredAt, utc) => {
    const [one, objects, bytes] = lanes(occurredAt)
    expect(one.ok).toBe(false)
    for (const batch of [objects, bytes]) {
      expect(batch.events).toEqual([])
      expect(batch.rejected).toEqual([{ index: 0, id: `t-${occurredAt}`, errors: [{ path: 'occurredAt', message: expect.any(String) }] }])
      expect(batch.rejected[0]!.errors[0]!.message).toBe(
        `occurredAt: must fall in years 0000-9999 once in UTC (0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z), got ${JSON.stringify(occurredAt)}, which is ${utc}`,
      )
    }
  })
})

describe('bounds in payload schemas say whether the bound itself is allowed', () => {
  const payload = z.object({
    positive: z.number().positive().optional(),
    nonNegative: z.number().nonnegative().optional(),
    gt: z.number().gt(2).optional(),
    gte: z.number().gte(2).optional(),
    lt: z.number().lt(10).optional(),
    lte: z.number().lte(10).optional(),
    code: z.string().length(3).optional(),
    word: z.string().min(2).max(4).optional(),
    note: z.string().min(1).optional(),
    tags: z.array(z.string()).min(2).max(3).optional(),
    pair: z.array(z.number()).length(2).optional(),
    even: z.number().multipleOf(2).optional(),
  })
  const host = createEventModel({ events: { Bounded: { sources: ['api'], payload } } })
  const messageOf = (field: string, value: unknown) =>
    errorsOf(makeEvent({ name: 'Bounded', source: 'api', payload: { [field]: value } }), host).map((e) => e.message)

  it.each([
    ['positive', 0, 'payload.positive: must be greater than 0, got 0'],
    ['positive', -1, 'payload.positive: must be greater than 0, got -1'],
    ['nonNegative', -1, 'payload.nonNegative: must be at least 0, got -1'],
    ['gt', 2, 'payload.gt: must be greater than 2, got 2'],
    ['gte', 1, 'payload.gte: must be at least 2, got 1'],
    ['lt', 10, 'payload.lt: must be less than 10, got 10'],
    ['lte', 11, 'payload.lte: must be at most 10, got 11'],
    ['code', 'ab', 'payload.code: must be exactly 3 characters, got 2'],
    ['code', 'abcd', 'payload.code: must be exactly 3 characters, got 4'],
    ['word', 'a', 'payload.word: must be at least 2 characters, got 1'],
    ['word', 'abcde', 'payload.word: must be at most 4 characters, got 5'],
    ['note', '', 'payload.note: must not be empty'],
    ['tags', ['a'], 'payload.tags: must have at least 2 items, got 1'],
    ['tags', ['a', 'b', 'c', 'd'], 'payload.tags: must have at most 3 items, got 4'],
    ['pair', [1], 'payload.pair: must have exactly 2 items, got 1'],
    ['pair', [1, 2, 3], 'payload.pair: must have exactly 2 items, got 3'],
    ['even', 3, 'payload.even: must be a multiple of 2, got 3'],
  ])('%s given %j', (field, value, message) => {
    expect(messageOf(field, value)).toEqual([message])
  })

  it('accepts each bound where it allows the bound itself', () => {
    const ok = host.validateEvent(makeEvent({ name: 'Bounded', source: 'api', payload: { nonNegative: 0, gte: 2, lte: 10, code: 'abc', word: 'ab', tags: ['a', 'b'] } }))
    expect(ok.ok).toBe(true)
  })
})

describe('the received body, from parsing to storage', () => {
  const body = (events: Record<string, unknown>[]) => Buffer.from(JSON.stringify(events))

  it('is what parsing made of the bytes: their text, the bytes and whether they are owned', () => {
    const events = [makeEvent({ id: 'rb-1' }), makeEvent({ id: 'rb-2' })]
    const bytes = body(events)
    const received = parseBatchBytes(bytes, 32)
    expect(received.text).toBe(JSON.stringify(events))
    expect(received.bytes).toBe(bytes)
    expect(received.owned).toBe(false)
    expect(received.sizes).toEqual(events.map((e) => Buffer.byteLength(JSON.stringify(e))))
    expect(received.protoFree).toBe(true)
    expect(parseBatchBytes(bytes, 32, 0, true).owned).toBe(true)
  })

  it('is carried on by validation as given when every event is kept exactly as sent', () => {
    const received = parseBatchBytes(body([makeEvent({ id: 'rb-3' }), makeEvent({ id: 'rb-4' })]), 32, 0, true)
    const batch = model.validateBatch(received.value, received)
    expect(batch.events.map((e) => e.id)).toEqual(['rb-3', 'rb-4'])
    expect(batch.received).toBe(received)
  })

  it('is not carried on when an event is rejected, normalised, or the input was not parsed here', () => {
    const rejected = parseBatchBytes(body([makeEvent({ id: 'rb-5' }), makeEvent({ id: 'rb-6', source: 'web' })]), 32)
    expect(model.validateBatch(rejected.value, rejected).received).toBeUndefined()
    const normalised = parseBatchBytes(body([makeEvent({ id: 'rb-7', occurredAt: '2026-11-02T11:00:00+01:00' })]), 32)
    const batch = model.validateBatch(normalised.value, normalised)
    expect(batch.events[0]!.occurredAt).toBe('2026-11-02T10:00:00.000Z')
    expect(batch.received).toBeUndefined()
    expect(model.validateBatch([makeEvent({ id: 'rb-8' })]).received).toBeUndefined()
  })
})
