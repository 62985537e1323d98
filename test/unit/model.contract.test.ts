import { z } from 'zod'
import { describe, expect, it } from 'vitest'
import { canonicalEvents, createEventIngest, createEventModel, createEnvelopeSchema, defaultLimits } from 'event-ingest'
import { fixtures, makeEvent } from '../helpers/fixtures'

describe('v1 contract: golden fixtures stay valid', () => {
  const model = createEventModel()

  it('has a fixture for every canonical event and every expected source', () => {
    const covered = new Set(fixtures.map(({ event }) => `${event.name}/${event.source}`))
    for (const [name, definition] of Object.entries(canonicalEvents)) {
      for (const source of definition.sources) expect(covered, `${name} from ${source}`).toContain(`${name}/${source}`)
    }
  })

  it.each(fixtures)('accepts $file', ({ event }) => {
    const result = model.validateEvent(event)
    expect(result.ok ? [] : result.errors).toEqual([])
  })

  it('accepts all fixtures as one batch', () => {
    const result = model.validateBatch(fixtures.map((f) => f.event))
    expect(result.rejected).toEqual([])
    expect(result.events).toHaveLength(fixtures.length)
  })

  it('normalises offset timestamps to UTC and keeps the instant', () => {
    const { events } = model.validateBatch(fixtures.map((f) => f.event))
    for (const [i, event] of events.entries()) {
      expect(event.occurredAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      expect(Date.parse(event.occurredAt)).toBe(Date.parse(fixtures[i]!.event.occurredAt))
    }
    const plus = events.find((e) => e.id === 'evt_offset_plus')!
    expect(plus.occurredAt).toBe('2026-11-02T14:03:11.000Z')
    const minus = events.find((e) => e.id === 'evt_offset_minus')!
    expect(minus.occurredAt).toBe('2026-11-02T14:03:11.500Z')
  })

  it('preserves unknown envelope and payload fields from newer producers', () => {
    const fixture = fixtures.find((f) => f.file === 'unknown-fields.json')!.event
    const result = model.validateEvent(fixture)
    expect(result.ok).toBe(true)
    if (!result.ok) return
    expect(result.event.traceId).toBe('trace-7f3a')
    expect(result.event.producer).toEqual({ name: 'chatbot', version: '9.1.0' })
    expect(result.event.payload).toEqual(fixture.payload)
  })

  it('does not mutate the input', () => {
    const input = structuredClone(fixtures.map((f) => f.event))
    const before = JSON.stringify(input)
    model.validateBatch(input)
    expect(JSON.stringify(input)).toBe(before)
  })

  it('keeps every fixture valid when the envelope gains a new optional field', () => {
    // What a future minor change to the model looks like: a new optional field must not break v1.
    const extended = createEnvelopeSchema(defaultLimits).extend({ traceId: z.string().max(64).optional() })
    for (const { file, event } of fixtures) {
      const result = extended.safeParse(event)
      expect(result.success, `${file}: ${result.error?.message}`).toBe(true)
    }
    const strict = createEnvelopeSchema(defaultLimits).extend({ channel: z.enum(['web', 'app']).optional() })
    for (const { event } of fixtures) expect(strict.safeParse(event).success).toBe(true)
  })

  it('keeps every fixture valid when a host adds its own events', () => {
    const hostModel = createEventModel({
      events: { RefundIssued: { sources: ['api'], payload: z.object({ orderId: z.string() }) } },
    })
    const result = hostModel.validateBatch(fixtures.map((f) => f.event))
    expect(result.rejected).toEqual([])
  })
})

describe('published schema', () => {
  it('describes version, sources, every event and JSON Schema for envelope and payloads', () => {
    const model = createEventModel({
      events: { RefundIssued: { sources: ['api', 'admin'], payload: z.object({ orderId: z.string(), amount: z.number() }) } },
    })
    const description = model.describe()
    expect(description.schemaVersion).toBe(1)
    expect(description.supportedVersions).toEqual([1])
    expect(description.events.map((e) => e.name)).toEqual([...Object.keys(canonicalEvents), 'RefundIssued'])
    expect(description.events.find((e) => e.name === 'PromoApplied')!.sources).toEqual(['storefront', 'admin'])
    const refund = description.events.find((e) => e.name === 'RefundIssued')!
    expect(refund.payloadSchema).toMatchObject({ type: 'object', required: ['orderId', 'amount'] })
    const envelope = description.envelopeSchema as any
    expect(envelope.required).toEqual(expect.arrayContaining(['id', 'name', 'schemaVersion', 'occurredAt', 'source', 'payload']))
    expect(envelope.properties.id.maxLength).toBe(128)
    expect(envelope.properties.occurredAt.format).toBe('date-time')
    expect(envelope.properties.source.enum).toEqual(['storefront', 'admin', 'api', 'bot', 'agent'])
    expect(JSON.parse(JSON.stringify(description))).toEqual(description)
  })

  it('reflects configured limits in the JSON Schema', () => {
    const model = createEventModel({ limits: { maxIdLength: 40 } })
    expect((model.describe().envelopeSchema as any).properties.id.maxLength).toBe(40)
    expect(model.describe().limits.maxIdLength).toBe(40)
  })
})

describe('ids', () => {
  it('are byte-exact: the NFC and NFD forms of one text are two events', async () => {
    const ingest = createEventIngest({ env: {} })
    try {
      const nfc = 'caf\u00e9-1'
      const nfd = 'cafe\u0301-1'
      expect(nfc.normalize('NFC')).toBe(nfd.normalize('NFC'))
      const result = await ingest.ingest([makeEvent({ id: nfc }), makeEvent({ id: nfd })])
      expect(result).toMatchObject({ accepted: 2, duplicates: 0 })
      expect((await ingest.events()).events.map((e) => e.id).sort()).toEqual([nfd, nfc].sort())
    } finally {
      await ingest.close()
    }
  })
})
