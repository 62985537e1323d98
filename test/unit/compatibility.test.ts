import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import {
  breakingRules,
  checkCompatibility,
  compatibleRules,
  createEventModel,
  exportModel,
  parseModelDescription,
  type CompatibilityRule,
  type EventDefinitions,
  type EventModelOptions,
} from 'event-ingest'

/**
 * The compatibility rules as a table: each row a change of the model and its verdict. Models are
 * built with zod and published as `GET /events/schema` does; the "before" side goes through a
 * saved export (written, then parsed), as in CI.
 */
type Verdict = [rule: CompatibilityRule, event: string, path: string]

interface Row {
  change: string
  before: EventModelOptions<EventDefinitions>
  after: EventModelOptions<EventDefinitions>
  breaking?: Verdict[]
  compatible?: Verdict[]
}

const only = (events: EventDefinitions, rest: Omit<EventModelOptions<EventDefinitions>, 'events'> = {}) => ({ canonical: false, events, ...rest })
/** One event `E` from `api` with the given payload schema. */
const payload = (schema?: z.ZodType) => only({ E: { sources: ['api'], ...(schema ? { payload: schema } : {}) } })

const card = z.object({ kind: z.literal('card'), last4: z.string().optional() })
const bank = z.object({ kind: z.literal('bank'), iban: z.string() })
const tree = (maxName: number) => {
  const node = z.object({
    name: z.string().max(maxName),
    get children(): z.ZodOptional<z.ZodArray<typeof node>> {
      return z.array(node).optional()
    },
  })
  return node
}

const rows: Row[] = [
  // Events and sources
  { change: 'an event removed', before: only({ A: { sources: ['api'] }, B: { sources: ['bot'] } }), after: only({ A: { sources: ['api'] } }), breaking: [['event-removed', 'B', 'name']] },
  { change: 'an event added', before: only({ A: { sources: ['api'] } }), after: only({ A: { sources: ['api'] }, B: { sources: ['bot'] } }), compatible: [['event-added', 'B', 'name']] },
  { change: 'an expected source removed', before: only({ A: { sources: ['api', 'admin'] } }), after: only({ A: { sources: ['api'] } }), breaking: [['source-removed', 'A', 'sources']] },
  { change: 'an expected source added', before: only({ A: { sources: ['api'] } }), after: only({ A: { sources: ['api', 'bot'] } }), compatible: [['source-added', 'A', 'sources']] },
  { change: 'sourcePolicy accept to reject', before: only({ A: { sources: ['api'] } }, { sourcePolicy: 'accept' }), after: only({ A: { sources: ['api'] } }), breaking: [['source-policy-tightened', '(model)', 'sourcePolicy']] },
  { change: 'sourcePolicy reject to accept', before: only({ A: { sources: ['api'] } }), after: only({ A: { sources: ['api'] } }, { sourcePolicy: 'accept' }), compatible: [['source-policy-loosened', '(model)', 'sourcePolicy']] },
  {
    change: 'a shorter maxIdLength (the envelope narrowed)',
    before: only({ A: { sources: ['api'] } }),
    after: only({ A: { sources: ['api'] } }, { limits: { maxIdLength: 64 } }),
    breaking: [['limit-lowered', '(limits)', 'limits.maxIdLength'], ['bound-tightened', '(envelope)', 'envelope.id']],
  },
  { change: 'a larger maxEventBytes', before: only({ A: { sources: ['api'] } }), after: only({ A: { sources: ['api'] } }, { limits: { maxEventBytes: 65_536 } }), compatible: [['limit-raised', '(limits)', 'limits.maxEventBytes']] },
  { change: 'nothing', before: payload(z.object({ a: z.string() })), after: payload(z.object({ a: z.string() })) },
  { change: 'a description changed', before: only({ A: { sources: ['api'], description: 'one' } }), after: only({ A: { sources: ['api'], description: 'two' } }) },

  // Fields: added, removed, required and optional
  { change: 'a new optional field', before: payload(z.object({ a: z.string() })), after: payload(z.object({ a: z.string(), b: z.number().optional() })), compatible: [['field-added', 'E', 'payload.b']] },
  { change: 'a new required field', before: payload(z.object({ a: z.string() })), after: payload(z.object({ a: z.string(), b: z.number() })), breaking: [['required-field-added', 'E', 'payload.b']] },
  { change: 'an optional field made required', before: payload(z.object({ a: z.string().optional() })), after: payload(z.object({ a: z.string() })), breaking: [['field-made-required', 'E', 'payload.a']] },
  { change: 'a required field made optional', before: payload(z.object({ a: z.string() })), after: payload(z.object({ a: z.string().optional() })), compatible: [['field-made-optional', 'E', 'payload.a']] },
  { change: 'a required field given a default (optional on input)', before: payload(z.object({ a: z.string() })), after: payload(z.object({ a: z.string().default('x') })), compatible: [['field-made-optional', 'E', 'payload.a']] },
  { change: 'a field removed', before: payload(z.object({ a: z.string(), b: z.string().optional() })), after: payload(z.object({ a: z.string() })), breaking: [['field-removed', 'E', 'payload.b']] },
  { change: 'a payload schema where there was none, with a required field', before: payload(), after: payload(z.object({ orderId: z.string() })), breaking: [['required-field-added', 'E', 'payload.orderId']] },
  { change: 'a payload schema where there was none, all optional', before: payload(), after: payload(z.object({ orderId: z.string().optional() })), compatible: [['field-added', 'E', 'payload.orderId']] },
  { change: 'a payload schema dropped', before: payload(z.object({ a: z.string() })), after: payload(), breaking: [['field-removed', 'E', 'payload.a']] },

  // Types
  { change: 'number narrowed to integer', before: payload(z.object({ n: z.number() })), after: payload(z.object({ n: z.int() })), breaking: [['type-narrowed', 'E', 'payload.n']] },
  { change: 'integer widened to number', before: payload(z.object({ n: z.int() })), after: payload(z.object({ n: z.number() })), compatible: [['type-widened', 'E', 'payload.n']] },
  { change: 'string | number narrowed to string', before: payload(z.object({ v: z.union([z.string(), z.number()]) })), after: payload(z.object({ v: z.string() })), breaking: [['type-narrowed', 'E', 'payload.v']] },
  { change: 'string widened to string | number', before: payload(z.object({ v: z.string() })), after: payload(z.object({ v: z.union([z.string(), z.number()]) })), compatible: [['type-widened', 'E', 'payload.v']] },
  { change: 'nullable no more', before: payload(z.object({ v: z.string().nullable() })), after: payload(z.object({ v: z.string() })), breaking: [['type-narrowed', 'E', 'payload.v']] },
  { change: 'a field of any type given a type', before: payload(z.object({ v: z.unknown() })), after: payload(z.object({ v: z.string() })), breaking: [['type-narrowed', 'E', 'payload.v']] },
  { change: 'a string format added', before: payload(z.object({ email: z.string() })), after: payload(z.object({ email: z.email() })), breaking: [['bound-tightened', 'E', 'payload.email'], ['bound-tightened', 'E', 'payload.email']] },

  // Enums and literals
  { change: 'an enum value removed', before: payload(z.object({ c: z.enum(['EUR', 'USD', 'GBP']) })), after: payload(z.object({ c: z.enum(['EUR', 'USD']) })), breaking: [['enum-value-removed', 'E', 'payload.c']] },
  { change: 'an enum value added', before: payload(z.object({ c: z.enum(['EUR', 'USD']) })), after: payload(z.object({ c: z.enum(['EUR', 'USD', 'GBP']) })), compatible: [['enum-value-added', 'E', 'payload.c']] },
  { change: 'a literal widened to an enum', before: payload(z.object({ c: z.literal('EUR') })), after: payload(z.object({ c: z.enum(['EUR', 'USD']) })), compatible: [['enum-value-added', 'E', 'payload.c']] },
  { change: 'a free string limited to an enum', before: payload(z.object({ c: z.string() })), after: payload(z.object({ c: z.enum(['EUR']) })), breaking: [['type-narrowed', 'E', 'payload.c']] },

  // Bounds: length, range, pattern, items
  { change: 'a shorter maxLength', before: payload(z.object({ s: z.string().max(64) })), after: payload(z.object({ s: z.string().max(32) })), breaking: [['bound-tightened', 'E', 'payload.s']] },
  { change: 'a minLength added', before: payload(z.object({ s: z.string() })), after: payload(z.object({ s: z.string().min(3) })), breaking: [['bound-tightened', 'E', 'payload.s']] },
  { change: 'a longer maxLength', before: payload(z.object({ s: z.string().max(32) })), after: payload(z.object({ s: z.string().max(64) })), compatible: [['bound-loosened', 'E', 'payload.s']] },
  { change: 'minimum 0 to positive (exclusive 0)', before: payload(z.object({ n: z.number().min(0) })), after: payload(z.object({ n: z.number().positive() })), breaking: [['bound-tightened', 'E', 'payload.n']] },
  { change: 'positive to nonnegative', before: payload(z.object({ n: z.number().positive() })), after: payload(z.object({ n: z.number().nonnegative() })), compatible: [['bound-loosened', 'E', 'payload.n']] },
  { change: 'a lower maximum', before: payload(z.object({ n: z.int().max(100) })), after: payload(z.object({ n: z.int().max(50) })), breaking: [['bound-tightened', 'E', 'payload.n']] },
  { change: 'a maximum removed', before: payload(z.object({ n: z.number().max(100) })), after: payload(z.object({ n: z.number() })), compatible: [['bound-loosened', 'E', 'payload.n']] },
  { change: 'a pattern added', before: payload(z.object({ id: z.string() })), after: payload(z.object({ id: z.string().regex(/^ord_/) })), breaking: [['bound-tightened', 'E', 'payload.id']] },
  { change: 'a pattern changed', before: payload(z.object({ id: z.string().regex(/^ord_/) })), after: payload(z.object({ id: z.string().regex(/^ord_\d+$/) })), breaking: [['bound-tightened', 'E', 'payload.id']] },
  { change: 'a pattern removed', before: payload(z.object({ id: z.string().regex(/^ord_/) })), after: payload(z.object({ id: z.string() })), compatible: [['bound-loosened', 'E', 'payload.id']] },
  { change: 'an array given minItems', before: payload(z.object({ tags: z.array(z.string()) })), after: payload(z.object({ tags: z.array(z.string()).min(1) })), breaking: [['bound-tightened', 'E', 'payload.tags']] },
  { change: 'an array maxItems raised', before: payload(z.object({ tags: z.array(z.string()).max(5) })), after: payload(z.object({ tags: z.array(z.string()).max(10) })), compatible: [['bound-loosened', 'E', 'payload.tags']] },

  // additionalProperties
  { change: 'additionalProperties closed (strictObject)', before: payload(z.object({ a: z.string() })), after: payload(z.strictObject({ a: z.string() })), breaking: [['additional-properties-closed', 'E', 'payload']] },
  { change: 'additionalProperties opened', before: payload(z.strictObject({ a: z.string() })), after: payload(z.object({ a: z.string() })), compatible: [['additional-properties-opened', 'E', 'payload']] },
  { change: 'a closed nested object', before: payload(z.object({ c: z.object({ a: z.string() }) })), after: payload(z.object({ c: z.strictObject({ a: z.string() }) })), breaking: [['additional-properties-closed', 'E', 'payload.c']] },
  { change: 'a new optional field on a closed object', before: payload(z.strictObject({ a: z.string() })), after: payload(z.strictObject({ a: z.string(), b: z.string().optional() })), compatible: [['field-added', 'E', 'payload.b']] },
  { change: 'record values widened', before: payload(z.object({ m: z.record(z.string(), z.string()) })), after: payload(z.object({ m: z.record(z.string(), z.union([z.string(), z.number()])) })), compatible: [['type-widened', 'E', 'payload.m{}']] },
  { change: 'record values narrowed', before: payload(z.object({ m: z.record(z.string(), z.union([z.string(), z.number()])) })), after: payload(z.object({ m: z.record(z.string(), z.string()) })), breaking: [['type-narrowed', 'E', 'payload.m{}']] },

  // Nested payloads and arrays
  {
    change: 'a nested optional field made required',
    before: payload(z.object({ customer: z.object({ id: z.string(), email: z.string().optional() }) })),
    after: payload(z.object({ customer: z.object({ id: z.string(), email: z.string() }) })),
    breaking: [['field-made-required', 'E', 'payload.customer.email']],
  },
  {
    change: 'a nested required field made optional again',
    before: payload(z.object({ customer: z.object({ email: z.string() }) })),
    after: payload(z.object({ customer: z.object({ email: z.string().optional() }) })),
    compatible: [['field-made-optional', 'E', 'payload.customer.email']],
  },
  {
    change: 'a shorter maxLength inside array items',
    before: payload(z.object({ items: z.array(z.object({ sku: z.string().max(64), quantity: z.int() })) })),
    after: payload(z.object({ items: z.array(z.object({ sku: z.string().max(32), quantity: z.int() })) })),
    breaking: [['bound-tightened', 'E', 'payload.items[].sku']],
  },
  {
    change: 'an array items field made required, another added optional',
    before: payload(z.object({ items: z.array(z.object({ sku: z.string(), quantity: z.int().optional() })) })),
    after: payload(z.object({ items: z.array(z.object({ sku: z.string(), quantity: z.int(), note: z.string().optional() })) })),
    breaking: [['field-made-required', 'E', 'payload.items[].quantity']],
    compatible: [['field-added', 'E', 'payload.items[].note']],
  },
  { change: 'array items narrowed', before: payload(z.object({ ids: z.array(z.union([z.string(), z.number()])) })), after: payload(z.object({ ids: z.array(z.string()) })), breaking: [['type-narrowed', 'E', 'payload.ids[]']] },
  { change: 'a tuple position narrowed', before: payload(z.object({ at: z.tuple([z.number(), z.number()]) })), after: payload(z.object({ at: z.tuple([z.number(), z.int()]) })), breaking: [['type-narrowed', 'E', 'payload.at[1]']] },
  { change: 'a recursive schema with a shorter name (no endless walk)', before: payload(tree(64)), after: payload(tree(32)), breaking: [['bound-tightened', 'E', 'payload.name']] },

  // Unions
  {
    change: 'a field made required inside one option of a discriminated union',
    before: payload(z.object({ method: z.discriminatedUnion('kind', [card, bank]) })),
    after: payload(z.object({ method: z.discriminatedUnion('kind', [card.extend({ last4: z.string() }), bank]) })),
    breaking: [['field-made-required', 'E', 'payload.method|0.last4']],
  },
  {
    change: 'a union option removed',
    before: payload(z.object({ method: z.discriminatedUnion('kind', [card, bank]) })),
    after: payload(z.object({ method: z.discriminatedUnion('kind', [card]) })),
    breaking: [['type-narrowed', 'E', 'payload.method|1']],
  },
  {
    change: 'a union option added',
    before: payload(z.object({ method: z.discriminatedUnion('kind', [card]) })),
    after: payload(z.object({ method: z.discriminatedUnion('kind', [card, bank]) })),
    compatible: [['type-widened', 'E', 'payload.method']],
  },
  { change: 'an object option removed from a union with a string', before: payload(z.object({ v: z.union([z.string(), z.object({ a: z.string() })]) })), after: payload(z.object({ v: z.string() })), breaking: [['type-narrowed', 'E', 'payload.v|1']] },
  {
    change: 'a field made optional inside a union option',
    before: payload(z.object({ v: z.union([z.string(), z.object({ a: z.string() })]) })),
    after: payload(z.object({ v: z.union([z.string(), z.object({ a: z.string().optional() })]) })),
    compatible: [['field-made-optional', 'E', 'payload.v|1.a']],
  },
  {
    change: 'redaction rules added, changed and removed: reported, never breaking',
    before: only({ E: { sources: ['api'], redact: { email: 'mask', ip: 'drop' } } }),
    after: only({ E: { sources: ['api'], redact: { email: 'hash', 'items[].phone': 'mask' } } }),
    compatible: [['redaction-removed', 'E', 'payload.ip'], ['redaction-changed', 'E', 'payload.email'], ['redaction-added', 'E', 'payload.items[].phone']],
  },
]

const verdicts = (changes: { rule: CompatibilityRule; event: string; path: string }[]) => changes.map((change): Verdict => [change.rule, change.event, change.path])

describe('checkCompatibility: every change of the model and its verdict', () => {
  it.each(rows)('$change', (row) => {
    const saved = parseModelDescription(exportModel(createEventModel(row.before).describe()), 'the saved export')
    const report = checkCompatibility(saved, createEventModel(row.after).describe())
    expect(verdicts(report.breaking)).toEqual(row.breaking ?? [])
    expect(verdicts(report.additions)).toEqual(row.compatible ?? [])
    expect(report.compatible).toBe(!row.breaking?.length)
    for (const change of report.breaking) expect(change.kind).toBe('breaking')
    for (const change of report.additions) expect(change.kind).toBe('compatible')
  })

  it('covers every rule in the table', () => {
    const covered = new Set(rows.flatMap((row) => [...(row.breaking ?? []), ...(row.compatible ?? [])].map(([rule]) => rule)))
    const untested = [...breakingRules, ...compatibleRules].filter((rule) => !covered.has(rule) && rule !== 'version-removed' && rule !== 'version-added')
    expect(untested).toEqual([])
  })

  it('names a supported schemaVersion dropped as breaking, and a new one as compatible', () => {
    const model = createEventModel().describe()
    const report = checkCompatibility({ ...model, supportedVersions: [1, 2] }, { ...model, supportedVersions: [2, 3] })
    expect(verdicts(report.breaking)).toEqual([['version-removed', '(model)', 'schemaVersion']])
    expect(verdicts(report.additions)).toEqual([['version-added', '(model)', 'schemaVersion']])
  })

  it('says what changed in each message, before and after', () => {
    const report = checkCompatibility(
      createEventModel(payload(z.object({ s: z.string().max(64), c: z.enum(['EUR', 'USD']) }))).describe(),
      createEventModel(payload(z.object({ s: z.string().max(32), c: z.enum(['EUR']) }))).describe(),
    )
    expect(report.breaking.map((change) => change.message)).toEqual(['maxLength 64 → 32', 'value "USD" is no longer accepted (now "EUR")'])
    const union = checkCompatibility(
      createEventModel(payload(z.object({ method: z.discriminatedUnion('kind', [card, bank]) }))).describe(),
      createEventModel(payload(z.object({ method: z.discriminatedUnion('kind', [card]) }))).describe(),
    )
    expect(union.breaking.map((change) => change.message)).toEqual(['union option kind: "bank" is no longer accepted'])
  })

  it('finds the canonical model compatible with itself and with its committed export', () => {
    const canonical = createEventModel().describe()
    expect(checkCompatibility(canonical, canonical)).toEqual({ compatible: true, breaking: [], additions: [] })
  })
})
