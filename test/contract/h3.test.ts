import { createServer } from 'node:http'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { H3, readBody, toNodeHandler, type H3Event } from 'h3'
import { createEventIngest, type EventIngest } from '../../src/index'
import { eventIngestPlugin } from '../../adapters/h3'
import { defineConformanceSuite } from './conformance/suite'
import { defineBodyDecodingSuite } from './conformance/body-decoding'
import { makeEvent } from '../helpers/fixtures'
import { rawRequest } from '../helpers/http'
import { closeServer, h3Host, h3MountHost, listen } from '../helpers/servers'

defineConformanceSuite(h3Host)
defineConformanceSuite(h3MountHost)
defineBodyDecodingSuite(h3Host)

describe('h3: a host middleware that reads the body before the handler', () => {
  const readers: Record<string, (event: H3Event) => Promise<unknown>> = {
    'readBody(event)': (event) => readBody(event),
    'event.req.json()': (event) => event.req.json(),
    'event.req.text()': (event) => event.req.text(),
    'event.req.arrayBuffer()': (event) => event.req.arrayBuffer(),
  }
  let ingest: EventIngest<any>
  let url: string
  let server: ReturnType<typeof createServer>
  const seen: unknown[] = []
  beforeAll(async () => {
    ingest = createEventIngest({ env: {}, limits: { maxBodyBytes: 4096 } })
    await ingest.ready()
    const app = new H3()
    // The host's own middleware, registered before the plugin: it reads every POST body first.
    app.use(async (event) => {
      const reader = readers[event.req.headers.get('x-reader') ?? '']
      if (event.req.method === 'POST' && reader) seen.push(await reader(event).catch((error: Error) => `failed: ${error.message}`))
    })
    app.register(eventIngestPlugin(ingest, { base: '/api' }))
    server = createServer(toNodeHandler(app))
    url = await listen(server)
  })
  afterAll(async () => {
    await closeServer(server)
    await ingest.close()
  })

  for (const name of Object.keys(readers)) {
    it(`stores the batch the host read with ${name}, and the host got the body`, async () => {
      const event = makeEvent({ id: `h3-read-${name}` })
      seen.length = 0
      const res = await rawRequest(`${url}/api/events/ingest`, { headers: { 'content-type': 'application/json', 'x-reader': name }, body: JSON.stringify([event]) })
      expect(res.status, res.text).toBe(200)
      expect(res.json).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      expect((await ingest.events()).events.map((e) => e.id)).toContain(event.id)
      const got = seen[0]
      const text = got instanceof ArrayBuffer ? Buffer.from(got).toString() : typeof got === 'string' ? got : JSON.stringify(got)
      expect(JSON.parse(text)).toEqual([event])
    })
  }

  it('stores the batch a middleware read with the plugin registered twice on the app (the body kept once)', async () => {
    const app = new H3()
    const read: unknown[] = []
    app.use(async (event) => {
      if (event.req.method === 'POST') read.push(await event.req.text())
    })
    app.register(eventIngestPlugin(ingest)).register(eventIngestPlugin(ingest))
    const twice = createServer(toNodeHandler(app))
    const twiceUrl = await listen(twice)
    try {
      const event = makeEvent({ id: 'h3-read-twice' })
      const res = await rawRequest(`${twiceUrl}/events/ingest`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify([event]) })
      expect(res.status, res.text).toBe(200)
      expect(res.json).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      expect(JSON.parse(read[0] as string)).toEqual([event])
      expect((await ingest.events()).events.map((e) => e.id)).toContain(event.id)
    } finally {
      await closeServer(twice)
    }
  })

  it('still holds a body the host read to the limits, the encoding and UTF-8', async () => {
    const headers = { 'content-type': 'application/json', 'x-reader': 'event.req.text()' }
    const big = await rawRequest(`${url}/api/events/ingest`, { headers, body: JSON.stringify([makeEvent({ payload: { pad: 'x'.repeat(5000) } })]) })
    expect(big.status).toBe(413)
    expect(big.json).toMatchObject({ code: 'body_too_large', limit: 'maxBodyBytes', value: 4096 })
    const invalid = await rawRequest(`${url}/api/events/ingest`, { headers, body: Buffer.concat([Buffer.from('[{"id":"a'), Buffer.from([0xff]), Buffer.from('"}]')]) })
    expect(invalid.status).toBe(400)
    expect(invalid.json.message).toBe('body is not valid UTF-8 at byte 9')
    const id = 'h3-read-gzip'
    const gzipped = await rawRequest(`${url}/api/events/ingest`, { headers: { ...headers, 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify([makeEvent({ id })])) })
    expect(gzipped.status, gzipped.text).toBe(200)
    expect(gzipped.json.accepted).toBe(1)
  })
})
