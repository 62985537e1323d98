import { createServer, type IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { gzipSync } from 'node:zlib'
import { afterEach, describe, expect, it } from 'vitest'
import { createEventIngest, type EventIngest, type IngestHttpResponse } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { rawRequest } from '../helpers/http'
import { closeServer, listen } from '../helpers/servers'

// A host on plain node:http handing its request stream to the core, as every adapter does when no
// host parser read the body; `prepare` is what the host did to the request first.
async function nodeHost(prepare: (req: IncomingMessage) => Promise<void> | void = () => {}) {
  const ingest: EventIngest<any> = createEventIngest({ env: {}, limits: { maxBodyBytes: 4096 } })
  await ingest.ready()
  const outcomes: Promise<IngestHttpResponse | undefined>[] = []
  const server = createServer(async (req, res) => {
    await prepare(req)
    const outcome = ingest.handle({ method: req.method!, path: req.url!, headers: req.headers, body: { stream: req } })
    outcomes.push(outcome)
    try {
      const response = (await outcome)!
      res.writeHead(response.status, response.headers).end(response.body)
    } catch {
      res.destroy()
    }
  })
  const url = await listen(server)
  return { url, ingest, outcomes, close: () => closeServer(server).then(() => ingest.close()) }
}

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  for (const host of open.splice(0)) await host.close()
})

describe('reading a Node request body', () => {
  it('ends the request as request_aborted, stores nothing and keeps serving when the client closes halfway through the body', async () => {
    const host = await nodeHost()
    open.push(host)
    const body = JSON.stringify([makeEvent({ id: 'half-sent' })])
    const { port } = new URL(host.url)
    const socket = connect(Number(port), '127.0.0.1')
    await new Promise<void>((resolve) => socket.once('connect', resolve))
    socket.write(`POST /events/ingest HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 20)}`)
    while (host.outcomes.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
    socket.destroy()
    // The read settles (no request left hanging on a body that never comes) as the end of that
    // request, answered to no one: not an error for the host to handle.
    const aborted = await host.outcomes[0]
    expect(aborted).toMatchObject({ status: 400 })
    expect(JSON.parse(aborted!.body)).toMatchObject({ code: 'request_aborted', message: expect.stringMatching(/^the request ended before its body was read/) })
    expect((await host.ingest.events()).events).toEqual([])
    const next = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify([makeEvent({ id: 'after-abort' })]) })
    expect(next.status).toBe(200)
    expect(next.json.accepted).toBe(1)
  })

  it('ends an encoded upload the client abandons as request_aborted, stores nothing and keeps serving', async () => {
    const host = await nodeHost()
    open.push(host)
    const body = gzipSync(JSON.stringify([makeEvent({ id: 'abandoned-gz', payload: { pad: 'x'.repeat(3000) } })]))
    const socket = connect(Number(new URL(host.url).port), '127.0.0.1')
    await new Promise<void>((resolve) => socket.once('connect', resolve))
    socket.write(`POST /events/ingest HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: ${body.length}\r\n\r\n`)
    socket.write(body.subarray(0, 20))
    while (host.outcomes.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
    socket.destroy()
    const ended = (await host.outcomes[0])!
    expect(ended.status).toBe(400)
    expect(JSON.parse(ended.body).code).toBe('request_aborted')
    expect((await host.ingest.events()).events).toEqual([])
    const next = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify([makeEvent({ id: 'after-abandon' })])) })
    expect(next.status).toBe(200)
  })

  it('reads a request the host paused', async () => {
    const host = await nodeHost((req) => {
      req.pause()
    })
    open.push(host)
    const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, chunks: [JSON.stringify([makeEvent({ id: 'paused-1' })])] })
    expect(res.status).toBe(200)
    expect(res.json.accepted).toBe(1)
  })

  it('reads a request the host listens to for readable (a stream that does not flow)', async () => {
    const host = await nodeHost((req) => {
      req.on('readable', () => {})
    })
    open.push(host)
    const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, chunks: [JSON.stringify([makeEvent({ id: 'readable-1' })])] })
    expect(res.status).toBe(200)
    expect(res.json.accepted).toBe(1)
  })

  it('answers 400 for a request whose body the host already read, instead of waiting for it', async () => {
    const host = await nodeHost(async (req) => {
      for await (const _ of req) {
        // The host consumed the body itself and handed on the spent stream.
      }
    })
    open.push(host)
    const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify([makeEvent({ id: 'spent-1' })]) })
    expect(res.status).toBe(400)
    expect(res.json).toMatchObject({ code: 'invalid_json', message: 'body is empty; send a JSON array of events' })
  })

  it('refuses a body over maxBodyBytes sent in chunks without a length, and answers 413 before closing', async () => {
    const host = await nodeHost()
    open.push(host)
    const big = JSON.stringify([makeEvent({ id: 'big-1', payload: { pad: 'x'.repeat(5000) } })])
    const res = await rawRequest(`${host.url}/events/ingest`, { headers: { 'content-type': 'application/json' }, chunks: [big.slice(0, 3000), big.slice(3000)] })
    expect(res.status).toBe(413)
    expect(res.json).toMatchObject({ code: 'body_too_large', limit: 'maxBodyBytes', value: 4096 })
    expect(res.headers.connection).toBe('close')
    expect((await host.ingest.events()).events).toEqual([])
  })

  it('answers request_aborted, never throws, for a stream shaped like a Node request that does not work as one, and for an error event without an Error', async () => {
    const ingest = createEventIngest({ env: {} })
    try {
      const headers = { 'content-type': 'application/json' }
      // Looks like an IncomingMessage to the core, but has no listenerCount.
      const shaped = { httpVersion: '1.1', headers, socket: {}, async *[Symbol.asyncIterator]() {} }
      const notAStream = ingest.handle({ method: 'POST', path: '/events/ingest', headers, body: { stream: shaped as never } })
      const answer = (await notAStream)!
      expect(answer.status).toBe(400)
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'request_aborted', message: expect.stringMatching(/^the request ended before its body was read: /) })
      // A stream that emits 'error' with nothing: the read settles all the same.
      const { PassThrough } = await import('node:stream')
      const stream = Object.assign(new PassThrough(), { httpVersion: '1.1', headers, socket: {} })
      const pending = ingest.handle({ method: 'POST', path: '/events/ingest', headers, body: { stream: stream as never } })
      await new Promise((resolve) => setImmediate(resolve))
      stream.emit('error', undefined)
      const failed = (await pending)!
      expect(failed.status).toBe(400)
      expect(JSON.parse(failed.body)).toMatchObject({ code: 'request_aborted', message: 'the request ended before its body was read: undefined' })
    } finally {
      await ingest.close()
    }
  })
})
