import { createServer } from 'node:http'
import { gzipSync } from 'node:zlib'
import express from 'express'
import Koa from 'koa'
import { bodyParser } from '@koa/bodyparser'
import { afterEach, describe, expect, it } from 'vitest'
import { createEventIngest, createEventModel, type EventIngest } from '../../src/index'
import { eventIngest } from '../../adapters/express'
import { eventIngest as koaIngest } from '../../adapters/koa'
import { makeEvent } from '../helpers/fixtures'
import { rawRequest } from '../helpers/http'
import { closeServer, listen } from '../helpers/servers'

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  for (const item of open.splice(0)) await item.close()
})

async function core(options: Parameters<typeof createEventIngest>[0] = {}): Promise<EventIngest<any>> {
  const ingest = createEventIngest({ env: {}, ...options })
  await ingest.ready()
  open.push(ingest)
  return ingest
}

const post = (ingest: EventIngest<any>, body: Uint8Array | string, headers: Record<string, string> = {}) =>
  ingest.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json', ...headers }, body: { bytes: body } })

describe('maxInflateRatio', () => {
  // One event padded with one repeated letter: it compresses about 60 times.
  const body = Buffer.from(JSON.stringify([makeEvent({ id: 'ratio-1', payload: { pad: 'a'.repeat(8000) } })]))
  const encoded = gzipSync(body)
  const ratio = Math.ceil(body.length / encoded.length)

  it('is 200 by default, published with the other limits, and must be a positive integer', () => {
    expect(createEventModel().limits.maxInflateRatio).toBe(200)
    expect(createEventModel().describe().limits.maxInflateRatio).toBe(200)
    expect(() => createEventModel({ limits: { maxInflateRatio: 0 } })).toThrow(/limits.maxInflateRatio must be a positive integer/)
    expect(() => createEventModel({ limits: { maxInflateRatio: 2.5 } })).toThrow(/limits.maxInflateRatio/)
  })

  it('passes a body that decodes to exactly the limit times its size, and refuses one over with 413 naming it', async () => {
    expect(ratio).toBeGreaterThan(20)
    const atLimit = await core({ limits: { maxInflateRatio: ratio } })
    const ok = await post(atLimit, encoded, { 'content-encoding': 'gzip' })
    expect(ok?.status, ok?.body).toBe(200)
    const under = await core({ limits: { maxInflateRatio: ratio - 1 } })
    const refused = await post(under, encoded, { 'content-encoding': 'gzip' })
    expect(refused?.status).toBe(413)
    expect(JSON.parse(refused!.body)).toMatchObject({ code: 'body_too_large', limit: 'maxInflateRatio', value: ratio - 1 })
    expect((await under.events()).events).toEqual([])
  })

  it('does not apply to a body sent without an encoding', async () => {
    const ingest = await core({ limits: { maxInflateRatio: 1 } })
    expect((await post(ingest, body))?.status).toBe(200)
  })
})

describe('bodies a host parser kept as text or bytes', () => {
  const event = makeEvent({ id: 'kept-1' })

  it('checks text for halves of surrogate pairs, which no UTF-8 carries', async () => {
    const ingest = await core()
    const text = `[{"id":"a\ud800b","name":"ProductViewed"}]`
    const res = await ingest.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json' }, body: { parsed: text } })
    expect(res?.status).toBe(400)
    expect(JSON.parse(res!.body)).toMatchObject({ code: 'invalid_json', message: 'body is not valid UTF-8 at character 9: the text holds half of a surrogate pair', offset: 9 })
    const ok = await ingest.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json' }, body: { parsed: JSON.stringify([{ ...event, id: 'kept-😀' }]) } })
    expect(ok?.status).toBe(200)
  })

  it('express.raw() in front: invalid UTF-8 is refused naming the byte, a byte order mark is dropped', async () => {
    const ingest = await core()
    const app = express()
    app.use(express.raw({ type: 'application/json' }))
    app.use(eventIngest(ingest))
    const server = createServer(app)
    const url = await listen(server)
    open.push({ close: () => closeServer(server) })
    const invalid = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: Buffer.concat([Buffer.from('[{"id":"x'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}]')]) })
    expect(invalid.status).toBe(400)
    expect(invalid.json).toMatchObject({ code: 'invalid_json', message: 'body is not valid UTF-8 at byte 9' })
    const bom = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify([event]))]) })
    expect(bom.status, bom.text).toBe(200)
    // body-parser inflated it: the encoding is not applied twice.
    const gzipped = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify([makeEvent({ id: 'kept-gz' })])) })
    expect(gzipped.status, gzipped.text).toBe(200)
    expect(gzipped.json.accepted).toBe(1)
    const empty = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'application/json', 'content-length': '0' }, body: '' })
    expect(empty.json).toMatchObject({ code: 'invalid_json', message: 'body is empty; send a JSON array of events' })
  })

  it('express.text() in front: a batch is taken, its size held to maxBodyBytes', async () => {
    const ingest = await core({ limits: { maxBodyBytes: 1024 } })
    const app = express()
    app.use(express.text({ type: 'text/plain' }))
    app.use(eventIngest(ingest))
    const server = createServer(app)
    const url = await listen(server)
    open.push({ close: () => closeServer(server) })
    const ok = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'text/plain' }, body: JSON.stringify([makeEvent({ id: 'text-é' })]) })
    expect(ok.status, ok.text).toBe(200)
    const big = JSON.stringify([makeEvent({ payload: { pad: 'x'.repeat(1200) } })])
    const chunked = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'text/plain' }, chunks: [big.slice(0, 600), big.slice(600)] })
    expect(chunked.status).toBe(413)
    expect(chunked.json).toMatchObject({ code: 'body_too_large', limit: 'maxBodyBytes', value: 1024 })
  })
})

describe('Express: a host parser refusal goes through the core', () => {
  it('checks the token before answering the parser error, and counts what it refuses', async () => {
    const ingest = await core({ token: 'tok', adminToken: 'adm' })
    const app = express()
    app.use(express.json())
    app.use(eventIngest(ingest))
    const server = createServer(app)
    const url = await listen(server)
    open.push({ close: () => closeServer(server) })
    const noToken = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: '[{"id":' })
    expect(noToken.status).toBe(401)
    expect(noToken.json.code).toBe('token_missing')
    const malformed = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'application/json', 'x-event-token': 'tok' }, body: '[{"id":' })
    expect(malformed.status).toBe(400)
    expect(malformed.json.code).toBe('invalid_json')
    const unknown = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'application/json', 'x-event-token': 'tok', 'content-encoding': 'snappy' }, body: '[]' })
    expect(unknown.status).toBe(415)
    expect(unknown.json).toMatchObject({ code: 'unsupported_encoding', contentEncoding: 'snappy' })
    const corrupt = await rawRequest(`${url}/events/ingest`, { headers: { 'content-type': 'application/json', 'x-event-token': 'tok', 'content-encoding': 'gzip' }, body: 'not gzip' })
    expect(corrupt.status).toBe(400)
    expect(corrupt.json.code).toBe('invalid_json')
    const stats = await ingest.stats()
    expect(stats.failures.refusedByCode).toEqual({ token_missing: 1, invalid_json: 2, unsupported_encoding: 1 })
  })
})

describe('Koa: eventIngest() mounted before @koa/bodyparser', () => {
  it('reads its own bodies with its own limits, and leaves every other request to the parser', async () => {
    const ingest = await core({ token: 'tok', limits: { maxBodyBytes: 1024 } })
    const app = new Koa()
    app.use(koaIngest(ingest, { base: '/api' }))
    app.use(bodyParser())
    app.use((ctx) => {
      ctx.body = { echo: (ctx.request as { body?: unknown }).body }
    })
    const server = createServer(app.callback())
    const url = await listen(server)
    open.push({ close: () => closeServer(server) })
    const send = (body: string | Buffer, headers: Record<string, string> = {}) =>
      rawRequest(`${url}/api/events/ingest`, { headers: { 'content-type': 'application/json', 'x-event-token': 'tok', ...headers }, body })
    const ok = await send(JSON.stringify([makeEvent({ id: 'koa-first' })]))
    expect(ok.json).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
    // Bytes a parser would have rewritten to U+FFFD, seen and refused here.
    const latin1 = await send(Buffer.concat([Buffer.from('[{"id":"'), Buffer.from([0xff]), Buffer.from('"}]')]))
    expect(latin1.json).toMatchObject({ code: 'invalid_json', message: 'body is not valid UTF-8 at byte 8', offset: 8 })
    const corrupt = await send(Buffer.from('[not gzip at all]'), { 'content-encoding': 'gzip' })
    expect(corrupt.status).toBe(400)
    expect(corrupt.json).toMatchObject({ code: 'invalid_json', message: expect.stringContaining('not valid gzip data') })
    const big = await send(JSON.stringify([makeEvent({ payload: { pad: 'x'.repeat(2000) } })]))
    expect(big.status).toBe(413)
    expect(big.json).toMatchObject({ code: 'body_too_large', limit: 'maxBodyBytes', value: 1024 })
    const wrong = await send('[{"id":', { 'x-event-token': 'wrong' })
    expect(wrong.status).toBe(401)
    expect((await ingest.stats()).failures.refusedByCode).toEqual({ invalid_json: 2, body_too_large: 1, token_invalid: 1 })
    // The host's own routes still get the parser.
    const echo = await rawRequest(`${url}/other`, { headers: { 'content-type': 'application/json' }, body: '{"hello":"world"}' })
    expect(echo.json).toEqual({ echo: { hello: 'world' } })
  })
})
