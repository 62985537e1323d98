import { describe, expect, it } from 'vitest'
import { defineConformanceSuite } from './conformance/suite'
import { defineBodyDecodingSuite } from './conformance/body-decoding'
import { allHosts } from '../helpers/hosts'
import { h3Host } from '../helpers/servers'

// Every host but h3's, which test/h3.test.ts runs.
for (const host of allHosts.filter((factory) => factory !== h3Host)) {
  defineConformanceSuite(host)
  defineBodyDecodingSuite(host)
}

describe("a host's own auth in front of the admin routes", () => {
  it('express: host middleware guards /admin, event-ingest trusts it through authorize', async () => {
    const express = (await import('express')).default
    const { createServer } = await import('node:http')
    const { createEventIngest } = await import('event-ingest')
    const { eventIngest } = await import('event-ingest/express')
    const { listen, closeServer } = await import('../helpers/servers')
    const ingest = createEventIngest({ env: {}, authorize: () => true })
    const app = express()
    // The host's own session check, in front of the admin routes only.
    app.use('/api/admin', (req, res, next) => (req.get('x-staff') === 'yes' ? next() : res.status(401).json({ host: 'login first' })))
    app.use('/api', eventIngest(ingest))
    const server = createServer(app)
    const url = await listen(server)
    try {
      const denied = await fetch(`${url}/api/admin/events/stats`)
      expect(denied.status).toBe(401)
      expect(await denied.json()).toEqual({ host: 'login first' })
      const allowed = await fetch(`${url}/api/admin/events/stats`, { headers: { 'x-staff': 'yes' } })
      expect(allowed.status).toBe(200)
      // Ingest stays open to producers.
      const ingested = await fetch(`${url}/api/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[]' })
      expect(ingested.status).toBe(200)
    } finally {
      await closeServer(server)
      await ingest.close()
    }
  })
})
