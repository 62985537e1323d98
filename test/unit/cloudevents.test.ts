import { describe, expect, it } from 'vitest'
import { cloudEventToEnvelope, createEventIngest, createEventModel, defaultCloudEventsSource, envelopeToCloudEvent, IngestError, resolveOptions } from '../../src/index'
import { cloudEventError, cloudEventsMapping, defaultForwardSource, parseCloudEventBytes, parseCloudEventText } from '../../src/model/cloudevents'

const time = '2026-11-02T14:03:11.000Z'
const ce = (fields: Record<string, unknown> = {}) => ({
  specversion: '1.0', id: 'ce-1', type: 'ProductViewed', source: '/storefront', time, data: { productId: 'p1' }, ...fields,
})
const envelope = (fields: Record<string, unknown> = {}) => ({
  id: 'ce-1', name: 'ProductViewed', occurredAt: time, source: 'storefront', payload: { productId: 'p1' }, schemaVersion: 1,
  cloudEvent: { source: '/storefront' }, ...fields,
})
const map = (input: Record<string, unknown>) => cloudEventToEnvelope(input, defaultCloudEventsSource)

describe('CloudEvents to envelope', () => {
  it.each([
    ['the attributes', ce(), envelope()],
    ['extensions schemaversion, companyid, subjectid', ce({ schemaversion: 1, companyid: 'co_1', subjectid: 'u_1' }), envelope({ companyId: 'co_1', subjectId: 'u_1' })],
    ['a schemaversion sent as a string', ce({ schemaversion: '1' }), envelope()],
    ['a JSON datacontenttype', ce({ datacontenttype: 'application/json; charset=utf-8' }), envelope()],
    ['other attributes kept under cloudEvent', ce({ subject: 'sku-9', dataschema: 'https://x.example/s', traceparent: '00-ab' }),
      envelope({ cloudEvent: { source: '/storefront', subject: 'sku-9', dataschema: 'https://x.example/s', traceparent: '00-ab' } })],
    ['an absolute source URI', ce({ source: 'https://shop.example/apps/storefront' }), envelope({ cloudEvent: { source: 'https://shop.example/apps/storefront' } })],
    ['a source that is a source name', ce({ source: 'storefront' }), envelope({ cloudEvent: { source: 'storefront' } })],
    ['null attributes as absent', ce({ subject: null, companyid: null }), envelope()],
  ])('maps %s', (_, input, expected) => {
    expect(map(input)).toEqual({ ok: true, event: expected })
  })

  it.each([
    ['a specversion other than 1.0', ce({ specversion: '0.3' }), 'specversion', 'specversion: expected "1.0", got "0.3"'],
    ['no specversion', ce({ specversion: undefined }), 'specversion', 'specversion: is required; send "1.0"'],
    ['no time', ce({ time: undefined }), 'time', "time: is required: it is the envelope's occurredAt"],
    ['data_base64', ce({ data: undefined, data_base64: 'AAEC' }), 'data_base64', 'data_base64: binary data is not supported; send the payload as a JSON object in data'],
    ['a datacontenttype that is not JSON', ce({ datacontenttype: 'text/xml' }), 'datacontenttype', 'datacontenttype: expected application/json (data is a JSON object), got "text/xml"'],
    ['no source', ce({ source: undefined }), 'source', 'source: is required'],
    ['a source that maps to none', ce({ source: '/warehouse' }), 'source', 'source: "/warehouse" maps to none of the sources storefront, admin, api, bot, agent (map it with the cloudEvents.source option)'],
    ['an extension that is an object', ce({ tenant: { a: 1 } }), 'tenant', 'tenant: a CloudEvents attribute must be a string, number or boolean, got an object'],
  ])('rejects %s naming the attribute', (_, input, path, message) => {
    expect(map(input)).toEqual({ ok: false, errors: [{ path, message }] })
  })

  it.each([
    ['storefront', 'storefront'],
    ['/storefront', 'storefront'],
    ['/storefront/', 'storefront'],
    ['https://shop.example/apps/admin?x=1#y', 'admin'],
    ['//cdn.example/bot', 'bot'],
    ['/storefront/web', undefined],
    ['urn:shop:storefront', undefined],
    ['/Storefront', undefined],
    ['', undefined],
  ])('default source mapping: %j is %j', (input, expected) => {
    expect(defaultCloudEventsSource(input)).toBe(expected)
  })

  it('maps the source with a record or a function', () => {
    const byRecord = cloudEventsMapping({ 'urn:shop:web': 'storefront' })
    expect(byRecord.map(ce({ source: 'urn:shop:web' }))).toMatchObject({ ok: true, event: { source: 'storefront' } })
    // A record names every source it maps: the default mapping does not apply beside it.
    expect(byRecord.map(ce())).toMatchObject({ ok: false, errors: [{ path: 'source' }] })
    const byFunction = cloudEventsMapping((s) => (s.startsWith('urn:bots:') ? 'bot' : undefined))
    expect(byFunction.map(ce({ source: 'urn:bots:7', type: 'BotCommand' }))).toMatchObject({ ok: true, event: { source: 'bot' } })
  })

  it('names envelope errors as CloudEvents attributes', () => {
    const mapping = { error: cloudEventError }
    expect(mapping.error({ path: 'name', message: 'name: unknown event name "X"' })).toEqual({ path: 'type', message: 'type: unknown event name "X"' })
    expect(mapping.error({ path: 'occurredAt', message: 'occurredAt: expected an ISO 8601 timestamp' })).toEqual({ path: 'time', message: 'time: expected an ISO 8601 timestamp' })
    expect(mapping.error({ path: 'payload.items.0.sku', message: 'payload.items.0.sku: is required' })).toEqual({ path: 'data.items.0.sku', message: 'data.items.0.sku: is required' })
    expect(mapping.error({ path: 'schemaVersion', message: 'schemaVersion: 2 is newer' })).toEqual({ path: 'schemaversion', message: 'schemaversion: 2 is newer' })
    expect(mapping.error({ path: 'companyId', message: 'companyId: must not be empty' })).toEqual({ path: 'companyid', message: 'companyid: must not be empty' })
    expect(mapping.error({ path: 'id', message: 'id: is required' })).toEqual({ path: 'id', message: 'id: is required' })
    const mapped = { source: 'bot', cloudEvent: { source: 'https://x.example/bot' } }
    expect(mapping.error({ path: 'source', message: 'source: X is expected from api, got "bot"' }, mapped)).toEqual({ path: 'source', message: 'source: X is expected from api, got "bot" (mapped from "https://x.example/bot")' })
    expect(mapping.error({ path: 'source', message: 'source: X is expected from api, got "bot"' }, { source: 'bot', cloudEvent: { source: 'bot' } }).message).toBe('source: X is expected from api, got "bot"')
    expect(mapping.error({ path: '', message: 'an event must be a JSON object' })).toEqual({ path: '', message: 'an event must be a JSON object' })
  })
})

describe('envelope to CloudEvents', () => {
  it.each([
    ['an envelope', { id: 'e1', name: 'OrderCreated', schemaVersion: 1, occurredAt: time, source: 'api', payload: { orderId: 'o1' } }, '/api',
      { specversion: '1.0', id: 'e1', type: 'OrderCreated', source: '/api', time, datacontenttype: 'application/json', schemaversion: 1, data: { orderId: 'o1' } }],
    ['with companyId and subjectId', { id: 'e2', name: 'OrderCreated', schemaVersion: 1, occurredAt: time, source: 'api', companyId: 'c', subjectId: 's', payload: {} }, 'urn:x',
      { specversion: '1.0', id: 'e2', type: 'OrderCreated', source: 'urn:x', time, datacontenttype: 'application/json', schemaversion: 1, companyid: 'c', subjectid: 's', data: {} }],
    ['received as a CloudEvent: its attributes back', envelope({ cloudEvent: { source: '/storefront', subject: 'sku-9', Bad: 'x', type: 'spoof' } }), '/storefront',
      { specversion: '1.0', id: 'ce-1', type: 'ProductViewed', source: '/storefront', subject: 'sku-9', time, datacontenttype: 'application/json', schemaversion: 1, data: { productId: 'p1' } }],
  ])('maps %s', (_, input, source, expected) => {
    expect(envelopeToCloudEvent(input, source)).toEqual(expected)
  })

  it('forwards with the source received, else /<source>, which ingest maps back', () => {
    expect(defaultForwardSource(envelope({ cloudEvent: { source: 'https://shop.example/storefront' } }))).toBe('https://shop.example/storefront')
    expect(defaultForwardSource({ source: 'agent' })).toBe('/agent')
    expect(defaultCloudEventsSource(defaultForwardSource({ source: 'agent' }))).toBe('agent')
  })

  it('round-trips: a CloudEvent mapped to an envelope and back is the same CloudEvent', () => {
    const input = ce({ datacontenttype: 'application/json', schemaversion: 1, companyid: 'co', subject: 'x' })
    const mapped = map(input)
    if (!mapped.ok) throw new Error('not mapped')
    expect(envelopeToCloudEvent(mapped.event, defaultForwardSource(mapped.event))).toEqual(input)
  })
})

describe('CloudEvents batches through validation', () => {
  const model = createEventModel()

  it('keeps indexes and names attributes in per-event errors', () => {
    const batch = [ce({ id: 'a' }), ce({ id: 'b', type: 'Nope' }), 7, ce({ id: 'd', time: 'yesterday' }), ce({ id: 'e', specversion: '2.0' }), ce({ id: 'f', data: { __proto__: 1 } })]
    const parsed = JSON.parse(JSON.stringify(batch).replace('"f","type":"ProductViewed","source":"/storefront","time":"2026-11-02T14:03:11.000Z","data":{}', '"f","type":"ProductViewed","source":"/storefront","time":"2026-11-02T14:03:11.000Z","data":{"__proto__":1}'))
    const result = model.validateBatch(parsed, undefined, cloudEventsMapping())
    expect(result.indexes).toEqual([0])
    expect(result.events[0]).toMatchObject({ id: 'a', name: 'ProductViewed', source: 'storefront', payload: { productId: 'p1' } })
    expect(result.received).toBeUndefined()
    expect(result.rejected.map((r) => [r.index, r.id, r.errors.map((e) => e.path)])).toEqual([
      [1, 'b', ['type']],
      [2, undefined, ['']],
      [3, 'd', ['time']],
      [4, 'e', ['specversion']],
      [5, 'f', ['data.__proto__']],
    ])
    expect(result.rejected[0]!.errors[0]!.message).toMatch(/^type: unknown event name "Nope"/)
    expect(result.rejected[1]!.errors[0]!.message).toBe('a CloudEvent must be a JSON object, got 7')
  })

  it('never hands the CloudEvents body on to be stored as received', () => {
    const bytes = Buffer.from(JSON.stringify([ce()]))
    const body = parseCloudEventBytes(Buffer.from(JSON.stringify(ce())), 32, 1024)
    expect(body.value).toEqual([ce()])
    expect(model.validateBatch(body.value, body, cloudEventsMapping()).received).toBeUndefined()
    expect(bytes.length).toBeGreaterThan(0)
  })

  it('reads a structured body as a batch of one, with the limits of a batch element', () => {
    const one = JSON.stringify(ce())
    expect(parseCloudEventText(`\uFEFF${one}`, 32).value).toEqual([ce()])
    expect(parseCloudEventBytes(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(one)]), 32).value).toEqual([ce()])
    for (const bad of ['[' + one + ']', `${one},${one}`, '7', '  ']) {
      expect(() => parseCloudEventBytes(Buffer.from(bad), 32), bad).toThrow(/application\/cloudevents\+json body must be one CloudEvent/)
    }
    // Depth: the event is level 2, as in a batch.
    expect(() => parseCloudEventBytes(Buffer.from(JSON.stringify(ce({ data: { a: { b: 1 } } }))), 3)).toThrow(IngestError)
    expect(parseCloudEventBytes(Buffer.from(JSON.stringify(ce({ data: { a: 1 } }))), 3).value).toHaveLength(1)
    // UTF-8 errors are named at their offset in the body as sent.
    const broken = Buffer.concat([Buffer.from('{"id":"'), Buffer.from([0xff]), Buffer.from('"}')])
    expect(() => parseCloudEventBytes(broken, 32)).toThrow('body is not valid UTF-8 at byte 7')
  })
})

describe('the cloudEvents option', () => {
  it('accepts a function or a record of sources, and refuses anything else naming it', () => {
    expect(resolveOptions({ cloudEvents: { source: () => 'api' } }).cloudEvents).toBeDefined()
    expect(resolveOptions({ cloudEvents: { source: { '/web': 'storefront' } } }).cloudEvents).toBeDefined()
    expect(() => resolveOptions({ cloudEvents: { source: { '/web': 'web' } } } as never)).toThrow('[event-ingest] cloudEvents.source["/web"] must be one of storefront, admin, api, bot, agent, got "web"')
    expect(() => resolveOptions({ cloudEvents: { source: 'storefront' } } as never)).toThrow(/cloudEvents\.source must be a function or a record/)
    expect(() => resolveOptions({ cloudEvents: { sources: {} } } as never)).toThrow(/cloudEvents.*sources/)
    expect(() => resolveOptions({ cloudEvents: 1 } as never)).toThrow('[event-ingest] cloudEvents must be an object, got 1')
  })

  it('maps CloudEvents given to ingest() with format "cloudevents"', async () => {
    const ingest = createEventIngest({ storage: 'memory:', cloudEvents: { source: { 'urn:web': 'storefront' } } })
    const result = await ingest.ingest([ce({ source: 'urn:web' }), ce({ id: 'x', source: '/storefront' })], { format: 'cloudevents' })
    expect(result).toMatchObject({ accepted: 1, rejected: [{ index: 1, id: 'x', errors: [{ path: 'source' }] }] })
    const stored = (await ingest.events()).events
    expect(stored.map((e) => [e.id, e.name, e.source, e.payload])).toEqual([['ce-1', 'ProductViewed', 'storefront', { productId: 'p1' }]])
    await ingest.close()
  })
})
