import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { H3, toNodeHandler } from 'h3'
import { createEventIngest, type EventIngest, type EventIngestOptions } from '../../src/index'
import { eventIngestPlugin } from '../../src/h3'

/** A running host app with event-ingest mounted, on a real loopback port. */
export interface RunningHost {
  url: string
  ingest: EventIngest<any>
  close(): Promise<void>
}

/** How one framework mounts event-ingest: the conformance suite runs against each. */
export interface HostFactory {
  name: string
  /** The host's own body parser reads the body before event-ingest sees it. */
  hostReadsBody?: boolean
  /** Malformed JSON is answered by the host's parser (its own 400), not by event-ingest. */
  hostAnswersParseErrors?: boolean
  /** With `hostReadsBody`: the content encodings the host's parser inflates (others it refuses with 415). Unset: all that event-ingest does. */
  hostDecodes?: readonly string[]
  start(ingest: EventIngest<any>, options: { base: string }): Promise<{ url: string; close(): Promise<void> }>
}

export function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))
  })
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections?.()
    server.close(() => resolve())
  })
}

export const h3Host: HostFactory = {
  name: 'h3',
  async start(ingest, { base }) {
    const app = new H3()
    app.post('/host/echo', async (event) => ({ echo: await event.req.json() }))
    app.register(eventIngestPlugin(ingest, { base }))
    app.all('/**', () => new Response(JSON.stringify({ host: 'not found' }), { status: 404, headers: { 'content-type': 'application/json' } }))
    const server = createServer(toNodeHandler(app))
    const url = await listen(server)
    return { url: url + base, close: () => closeServer(server) }
  },
}

/** Starts a host with a fresh core. The core's env is empty unless given, so the machine's variables never leak in. */
export async function startHost(factory: HostFactory, options: EventIngestOptions<any> = {}, base = ''): Promise<RunningHost> {
  const ingest = createEventIngest({ env: {}, ...options })
  await ingest.ready()
  const host = await factory.start(ingest, { base })
  return {
    url: host.url,
    ingest,
    async close() {
      await host.close()
      await ingest.close()
    },
  }
}
