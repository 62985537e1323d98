import { describe, expect, it } from 'vitest'
import { createEventModel, parseBatchBytes, SUPPORTED_SCHEMA_VERSIONS, type EventModel } from 'event-ingest'
import { fixtures } from '../helpers/fixtures'

/**
 * The validator answers most valid events without zod; this holds that answer to the zod schema
 * published as the contract: for a wide set of variants, an event is accepted exactly when the
 * envelope schema and the name, source and version rules accept it, and comes out the same.
 */
function oracle(model: EventModel<any>, event: unknown): { ok: boolean; output?: Record<string, unknown> } {
  const parsed = model.envelope.safeParse(event)
  if (!parsed.success) return { ok: false }
  const data = parsed.data as Record<string, any>
  const definition = (model.events as Record<string, { sources: readonly string[] }>)[data.name]
  if (!definition || !Object.hasOwn(model.events, data.name)) return { ok: false }
  if (model.sourcePolicy === 'reject' && !definition.sources.includes(data.source)) return { ok: false }
  if (!SUPPORTED_SCHEMA_VERSIONS.includes(data.schemaVersion)) return { ok: false }
  return { ok: true, output: { ...data, occurredAt: new Date(data.occurredAt).toISOString() } }
}

const values: Record<string, unknown[]> = {
  id: ['x', '', 'a'.repeat(128), 'a'.repeat(129), 7, null, undefined, ['x'], 'ü🙂', { id: 'x' }],
  name: ['OrderCreated', 'ProductViewed', 'Nope', '', 'toString', '__proto__', 'constructor', 3, undefined, null],
  schemaVersion: [1, 2, 0, -1, 1.5, '1', NaN, Infinity, null, undefined, true],
  occurredAt: [
    '2026-11-02T14:03:11Z', '2026-11-02T14:03:11.123Z', '2026-11-02T14:03:11.123456Z', '2026-11-02T16:03:11+02:00',
    '2024-02-29T00:00:00Z', '2026-02-29T00:00:00Z', '2026-02-30T00:00:00Z', '2026-13-01T00:00:00Z', '2026-11-02T24:00:00Z',
    '2026-11-02T14:03:60Z', '2026-11-02T14:03:11', '2026-11-02', '2026-11-02 14:03:11Z', '2026-11-02T14:03:11+0200',
    '2026-11-02T14:03:11z', 'yesterday', '', 1762092191000, null, undefined,
    // The canonical form (milliseconds, Z), read by hand: real and unreal dates, every field's bounds.
    '2026-11-02T14:03:11.123Z', '2024-02-29T00:00:00.000Z', '2000-02-29T12:00:00.000Z', '0000-02-29T00:00:00.000Z',
    '1900-02-29T00:00:00.000Z', '2026-02-29T00:00:00.000Z', '2026-04-31T00:00:00.000Z', '2026-04-30T23:59:59.999Z',
    '2026-12-31T23:59:59.999Z', '2026-00-10T00:00:00.000Z', '2026-11-00T00:00:00.000Z', '2026-11-32T00:00:00.000Z',
    '2026-11-02T24:00:00.000Z', '2026-11-02T14:60:00.000Z', '2026-11-02T14:03:60.000Z', '0050-01-01T00:00:00.000Z',
    '0999-06-15T08:30:00.500Z', '2026-11-02T14:03:11.12aZ', '2026-11-02t14:03:11.123Z', '2026-11-02T14:03:11.123z',
    '2026-11-02T14:03:11,123Z', '2026/11/02T14:03:11.123Z', '+02026-11-02T14:03:11.123Z', '2026-11-02T14:03:11.1234Z',
    '２026-11-02T14:03:11.123Z',
    // Years 0000 and 9999 with an offset that takes them out of the four-digit years in UTC, or not.
    '0000-01-01T00:00:00Z', '0000-01-01T00:30:00+01:00', '0000-01-01T01:00:00+01:00', '0000-01-01T00:00:00-00:01',
    '9999-12-31T23:59:59.999Z', '9999-12-31T23:30:00-01:00', '9999-12-31T22:59:59.999-01:00', '9999-12-31T23:59:59.9999999Z',
  ],
  source: ['storefront', 'admin', 'api', 'bot', 'agent', 'web', '', 'API', null, undefined],
  companyId: ['co_1', '', 'c'.repeat(128), 'c'.repeat(129), 5, null, undefined],
  subjectId: ['s_1', '', 's'.repeat(129), false, undefined],
  payload: [{}, { a: 1 }, [], [1], null, 'x', 1, undefined, Object.create(null), new Date(0), new (class Thing {})()],
}

function* variants(): Generator<unknown> {
  for (const { event } of fixtures) {
    yield event
    for (const [field, options] of Object.entries(values)) {
      for (const value of options) {
        const copy: Record<string, unknown> = { ...event }
        if (value === undefined) delete copy[field]
        else copy[field] = value
        yield copy
      }
    }
  }
  // Pairs of changes on one fixture, so the checks are exercised together.
  const base = fixtures[0]!.event
  const fields = Object.keys(values)
  for (const a of fields) for (const b of fields) {
    if (a >= b) continue
    for (const va of values[a]!.slice(0, 4)) for (const vb of values[b]!.slice(0, 4)) yield { ...base, [a]: va, [b]: vb }
  }
  yield 'not an event'
  yield [base]
  yield null
}

describe('the fast path agrees with the zod schema', () => {
  for (const policy of ['reject', 'accept'] as const) {
    it(`on every variant (sourcePolicy ${policy})`, () => {
      const model = createEventModel({ sourcePolicy: policy, limits: { maxIdLength: 128, maxRefLength: 128 } })
      let checked = 0
      let accepted = 0
      for (const event of variants()) {
        const expected = oracle(model, event)
        const actual = model.validateEvent(event)
        expect(actual.ok, JSON.stringify(event)).toBe(expected.ok)
        if (actual.ok) {
          accepted++
          expect(actual.event).toEqual(expected.output)
        }
        // The same event as a body of bytes: the ingest route's lane (scanned, no per-event walk).
        const body = JSON.stringify([event])
        const sent = JSON.parse(body)[0]
        const wanted = oracle(model, sent)
        const parsed = parseBatchBytes(Buffer.from(body), 32)
        const batch = model.validateBatch(parsed.value, parsed)
        expect(batch.events.length, body).toBe(wanted.ok ? 1 : 0)
        if (wanted.ok) expect(batch.events[0]).toEqual(wanted.output)
        checked++
      }
      expect(checked).toBeGreaterThan(1000)
      expect(accepted).toBeGreaterThan(100)
    })
  }
})
