import { createServer, type RequestListener } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import express from 'express'
import express4 from 'express4'
import Koa from 'koa'
import Koa2 from 'koa2'
import { bodyParser } from '@koa/bodyparser'
import { createEventIngest, type EventIngest } from '../../src/index'
import { eventIngest as expressIngest } from '../../adapters/express'
import { eventIngest as koaIngest, eventIngestErrors as koaIngestErrors } from '../../adapters/koa'
import { getJson, postEvents } from '../helpers/http'
import { closeServer, listen } from '../helpers/servers'
import { makeCloudEvent } from './conformance/cloudevents'

// The conformance suite runs each host parser as it comes, which leaves the CloudEvents types
// unread. A host may configure its parser to read them too: event-ingest then takes the parsed
// value (one object in structured mode, an array in batched mode), the text or the bytes.

const ADMIN = 'admin-secret-token'
const ceTypes = ['application/json', 'application/cloudevents+json', 'application/cloudevents-batch+json']

const hosts: Record<string, (ingest: EventIngest<any>) => RequestListener> = {
  'express + express.json({ type: CloudEvents types })': (ingest) => express().use(express.json({ type: ceTypes })).use('/api', expressIngest(ingest)) as never,
  'express 4 + express.json({ type: CloudEvents types })': (ingest) => express4().use(express4.json({ type: ceTypes })).use('/api', expressIngest(ingest) as never) as never,
  'express + express.text({ type: CloudEvents types })': (ingest) => express().use(express.text({ type: ceTypes })).use('/api', expressIngest(ingest)) as never,
  'express + express.raw({ type: CloudEvents types })': (ingest) => express().use(express.raw({ type: ceTypes })).use('/api', expressIngest(ingest)) as never,
  'koa + @koa/bodyparser (extendTypes: CloudEvents types)': (ingest) => koaApp(Koa, ingest),
  'koa 2 + @koa/bodyparser (extendTypes: CloudEvents types)': (ingest) => koaApp(Koa2 as unknown as typeof Koa, ingest),
}

function koaApp(App: typeof Koa, ingest: EventIngest<any>): RequestListener {
  const app = new App()
  app.silent = true
  app.use(koaIngestErrors(ingest, { base: '/api' }))
  app.use(bodyParser({ extendTypes: { json: ceTypes.slice(1) } }))
  app.use(koaIngest(ingest, { base: '/api' }))
  return app.callback()
}

for (const [name, build] of Object.entries(hosts)) {
  describe(`${name}: CloudEvents parsed by the host`, () => {
    let ingest: EventIngest<any>
    let server: ReturnType<typeof createServer>
    let url: string
    beforeAll(async () => {
      ingest = createEventIngest({ env: {}, adminToken: ADMIN, limits: { maxEvents: 50 } })
      await ingest.ready()
      server = createServer(build(ingest))
      url = `${await listen(server)}/api`
    })
    afterAll(async () => {
      await closeServer(server)
      await ingest.close()
    })

    it('stores one CloudEvent (structured mode) and a batch of 50 (batched mode), each id once', async () => {
      const one = makeCloudEvent()
      expect((await postEvents(url, one, { 'content-type': 'application/cloudevents+json' })).body).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      const batch = Array.from({ length: 50 }, () => makeCloudEvent())
      expect((await postEvents(url, batch, { 'content-type': 'application/cloudevents-batch+json' })).body).toEqual({ accepted: 50, duplicates: 0, rejected: [] })
      expect((await postEvents(url, batch, { 'content-type': 'application/cloudevents-batch+json' })).body).toEqual({ accepted: 0, duplicates: 50, rejected: [] })
      const stored = (await getJson(`${url}/admin/events?limit=100`, { authorization: `Bearer ${ADMIN}` })).body.events
      expect(stored.map((e: any) => e.id).sort()).toEqual([one, ...batch].map((e) => e.id).sort())
      expect(stored.every((e: any) => e.name === 'ProductViewed' && e.source === 'storefront' && !('specversion' in e))).toBe(true)
    })

    it('names CloudEvents attributes in per-event errors, and refuses a structured body that is an array', async () => {
      const res = await postEvents(url, [makeCloudEvent(), makeCloudEvent({ id: 'parsed-bad', specversion: '0.3', type: 'Nope' })], { 'content-type': 'application/cloudevents-batch+json' })
      expect(res.body).toMatchObject({ accepted: 1, rejected: [{ index: 1, id: 'parsed-bad', errors: [{ path: 'specversion' }] }] })
      const array = await postEvents(url, [makeCloudEvent()], { 'content-type': 'application/cloudevents+json' })
      expect(array.status).toBe(400)
      expect(array.body.code).toBe('invalid_json')
    })
  })
}
