import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import {
  checkCompatibility,
  checkFixtures,
  createEventModel,
  describeFields,
  exportModel,
  formatCompatibilityReport,
  parseModelDescription,
  pickExamples,
  readFixtures,
  renderCatalog,
} from 'event-ingest'
import { fixtures as golden } from '../helpers/fixtures'

const dirs: string[] = []
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})
async function folder(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ei-gov-'))
  dirs.push(dir)
  for (const [file, text] of Object.entries(files)) {
    await mkdir(join(dir, file, '..'), { recursive: true })
    await writeFile(join(dir, file), text)
  }
  return dir
}

const order = z.object({
  orderId: z.string().min(1).max(64).describe('The order'),
  total: z.number().nonnegative(),
  items: z.array(z.object({ sku: z.string(), quantity: z.int().min(1) })).min(1),
  customer: z.strictObject({ email: z.email().optional() }).optional(),
  tags: z.record(z.string(), z.string()).optional(),
  channel: z.union([z.literal('web'), z.literal('app')]).nullable().optional(),
})

describe('exportModel', () => {
  it('gives the same bytes for the same model, whatever order it was declared in', () => {
    const one = createEventModel({ events: { B: { sources: ['api'] }, A: { sources: ['bot'], payload: z.object({ y: z.string(), x: z.number() }) } } })
    const two = createEventModel({ events: { A: { sources: ['bot'], payload: z.object({ y: z.string(), x: z.number() }) }, B: { sources: ['api'] } } })
    const text = exportModel(one.describe())
    expect(text).toBe(exportModel(two.describe()))
    expect(text.endsWith('\n')).toBe(true)
    const saved = JSON.parse(text)
    expect(saved.events.slice(0, 2).map((event: { name: string }) => event.name)).toEqual(['A', 'AgentHeartbeat'])
    expect(Object.keys(saved.events[0].payloadSchema.properties)).toEqual(['x', 'y'])
    // `required` keeps the declared order: arrays are never reordered.
    expect(saved.events[0].payloadSchema.required).toEqual(['y', 'x'])
  })
})

describe('parseModelDescription', () => {
  it('reads an export back into what checkCompatibility compares', () => {
    const model = createEventModel({ events: { RefundIssued: { sources: ['api'], payload: order } } })
    const saved = parseModelDescription(exportModel(model.describe()), 'events.schema.json')
    expect(checkCompatibility(saved, model.describe())).toEqual({ compatible: true, breaking: [], additions: [] })
  })

  it('reads the redaction rules of an export back', () => {
    const model = createEventModel({ redact: [{ events: ['OrderCreated'], path: 'customer.email', action: 'hash' }] })
    const saved = parseModelDescription(exportModel(model.describe()), 'events.schema.json')
    expect(saved.events.find((e) => e.name === 'OrderCreated')!.redact).toEqual([{ action: 'hash', path: 'customer.email' }])
    expect(checkCompatibility(saved, model.describe())).toEqual({ compatible: true, breaking: [], additions: [] })
  })

  it.each([
    ['not json', 'events.schema.json is not JSON: '],
    ['[]', 'events.schema.json is not an event model export: the document must be an object (what GET /events/schema publishes), got []'],
    ['{}', 'events.schema.json is not an event model export: events must be an array, got nothing'],
    ['{"events":[{"name":"A","sources":["api"]}]}', 'events.schema.json is not an event model export: events[0].payloadSchema must be a JSON Schema, got nothing'],
    ['{"events":[{"name":"A","sources":["api"],"payloadSchema":{}},{"name":"A","sources":["api"],"payloadSchema":{}}]}', 'events.schema.json is not an event model export: events[1].name must be unique, got "A"'],
    ['{"events":[{"name":"A","sources":["api"],"payloadSchema":{},"redact":[{"path":"email"}]}]}', 'events.schema.json is not an event model export: events[0].redact must be an array of { path, action }, got [{"path":"email"}]'],
    ['{"events":[],"envelopeSchema":{},"sourcePolicy":"maybe"}', 'events.schema.json is not an event model export: sourcePolicy must be "reject" or "accept", got "maybe"'],
  ])('refuses %s, naming the field', (text, message) => {
    expect(() => parseModelDescription(text, 'events.schema.json')).toThrow(`[event-ingest] ${message}`)
  })
})

describe('readFixtures and checkFixtures', () => {
  it('finds every golden v1 fixture valid against the canonical model', async () => {
    const fixtures = await readFixtures(join(import.meta.dirname, '../fixtures/v1'))
    expect(fixtures.map((fixture) => fixture.file)).toEqual(golden.map((fixture) => fixture.file))
    expect(checkFixtures(createEventModel(), fixtures)).toEqual([])
  })

  it('reads sub-folders and files holding arrays, and names each invalid fixture with its errors', async () => {
    const event = golden.find((fixture) => fixture.file === 'OrderCreated.json')!.event
    const dir = await folder({
      'a.json': JSON.stringify(event),
      'nested/b.json': JSON.stringify([event, { ...event, id: 'evt_bad', source: 'bot' }]),
      'notes.txt': 'not a fixture',
    })
    const fixtures = await readFixtures(dir)
    expect(fixtures.map((fixture) => [fixture.file, fixture.index])).toEqual([['a.json', undefined], ['nested/b.json', 0], ['nested/b.json', 1]])
    const failures = checkFixtures(createEventModel(), fixtures)
    expect(failures).toEqual([{ file: 'nested/b.json', index: 1, id: 'evt_bad', errors: [{ path: 'source', message: expect.stringContaining('api') }] }])
  })

  it('holds fixtures to the size limit, as POST /events/ingest does', async () => {
    const event = golden.find((fixture) => fixture.file === 'OrderCreated.json')!.event
    const failures = checkFixtures(createEventModel({ limits: { maxEventBytes: 200 } }), [{ file: 'big.json', event }])
    expect(failures).toHaveLength(1)
    expect(failures[0]!.errors[0]!.message).toContain('maxEventBytes')
  })

  it('names a fixture that is not JSON', async () => {
    const dir = await folder({ 'broken.json': '{"id":' })
    await expect(readFixtures(dir)).rejects.toThrow('[event-ingest] fixture broken.json is not JSON')
  })
})

describe('renderCatalog', () => {
  const model = createEventModel({ canonical: false, events: { OrderPlaced: { sources: ['api', 'admin'], description: 'An order was placed.', payload: order }, Ping: { sources: ['agent'] } } })

  it('lists nested fields, array items, records and unions with their types, whether required, and constraints', () => {
    expect(describeFields(model.describe().events[0]!.payloadSchema).map(({ field, type, required, constraints }) => [field, type, required, constraints.join(', ')])).toEqual([
      ['orderId', 'string', true, '1–64 chars'],
      ['total', 'number', true, '≥ 0'],
      ['items', 'array of object', true, 'at least 1 item'],
      ['items[].sku', 'string', true, ''],
      ['items[].quantity', 'integer', true, '≥ 1'],
      ['customer', 'object', false, 'no other fields'],
      ['customer.email', 'string (email)', false, ''],
      ['tags', 'record of string', false, ''],
      ['channel', '"web" \\| "app" \\| null', false, ''],
    ])
  })

  it('renders the index, the envelope and each event with its sources, fields and example', () => {
    const event = { id: 'evt_1', name: 'OrderPlaced', schemaVersion: 1, occurredAt: '2026-11-02T14:03:11Z', source: 'api', payload: { orderId: 'o', total: 1, items: [{ sku: 's', quantity: 1 }] } }
    const examples = pickExamples([{ file: 'bad.json', event: { ...event, source: 'bot' } }, { file: 'order.json', event }], model)
    expect(examples).toEqual({ OrderPlaced: { file: 'order.json', event } })
    const text = renderCatalog(model.describe(), { examples })
    expect(text).toContain('| [OrderPlaced](#orderplaced) | api, admin | An order was placed. |')
    expect(text).toContain('| `id` | string | required | 1–128 chars |  |')
    expect(text).toContain('## OrderPlaced\n\nAn order was placed.\n\nExpected sources: `api`, `admin`.\n\nPayload:\n\n| field | type | required | constraints | description |')
    expect(text).toContain('| `orderId` | string | required | 1–64 chars | The order |')
    expect(text).toContain(`Example (\`order.json\`):\n\n\`\`\`json\n${JSON.stringify(event, null, 2)}\n\`\`\``)
    expect(text).toContain('## Ping\n\nExpected sources: `agent`.\n\nPayload: any JSON object (no payload schema).')
    expect(text).not.toContain('Redacted at ingest')
  })

  it('lists the redaction rules of an event', () => {
    const redacting = createEventModel({ canonical: false, events: { Ping: { sources: ['agent'], redact: { host: 'hash', 'disks[].serial': 'mask' } } } })
    expect(renderCatalog(redacting.describe())).toContain('Payload: any JSON object (no payload schema).\n\nRedacted at ingest, before storage and forwarding: `disks[].serial` (mask), `host` (hash).')
  })
})

describe('formatCompatibilityReport', () => {
  it('prints breaking changes first, one line each, then a summary', () => {
    const before = createEventModel({ canonical: false, events: { A: { sources: ['api'], payload: z.object({ a: z.string().optional() }) } } }).describe()
    const after = createEventModel({ canonical: false, events: { A: { sources: ['api'], payload: z.object({ a: z.string(), b: z.string().optional() }) }, B: { sources: ['bot'] } } }).describe()
    expect(formatCompatibilityReport(checkCompatibility(before, after), 'saved.json')).toBe([
      'BREAKING   A  payload.a  field-made-required: a was optional and is now required',
      'compatible A  payload.b  field-added: new optional field b',
      'compatible B  name  event-added: new event B (bot)',
      '1 breaking change against saved.json (2 compatible changes)',
      '',
    ].join('\n'))
    expect(formatCompatibilityReport(checkCompatibility(before, before))).toBe('compatible: no breaking change, 0 compatible changes\n')
  })
})
