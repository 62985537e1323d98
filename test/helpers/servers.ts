import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { H3, toNodeHandler } from 'h3'
import { createEventIngest, type EventIngest, type EventIngestOptions } from '../../src/index'
import { createEventIngestApp, eventIngestPlugin } from '../../adapters/h3'

/** A running host app with event-ingest mounted, on a real loopback port. */
export interface RunningHost {
  url: string
  /** The server's origin, without the base path. */
  origin: string
  ingest: EventIngest<any>
  /** Every error that reached the host's own error handler. */
  errors: unknown[]
  close(): Promise<void>
}

/** What a host app does besides mounting event-ingest. */
export interface HostSetup {
  /** The path prefix event-ingest is mounted under (`''` or like `/api`). */
  base: string
  /**
   * A host guard in front of the admin routes, as a host writes it: a request whose path (as the
   * framework hands it to the host's own middleware) starts with `base + '/admin'` is refused with
   * 401 `{ host: 'login first' }`.
   */
  guard?: boolean
  /** The host's error handler records each error here (and answers 500 `{ host: 'error' }`). */
  errors: unknown[]
}

/** How one framework mounts event-ingest: the conformance suite runs against each. */
export interface HostFactory {
  name: string
  /** The host's own body parser reads the body before event-ingest sees it. */
  hostReadsBody?: boolean
  /** With `hostReadsBody`: the host parser's own body limit, in bytes. */
  hostParserLimit?: number
  /** With `hostReadsBody`: the content encodings the host's parser inflates (others it refuses with 415). Unset: all that event-ingest does. */
  hostDecodes?: readonly string[]
  start(ingest: EventIngest<any>, setup: HostSetup): Promise<{ url: string; close(): Promise<void> }>
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

/** An h3 app: the host's error hook, guard, echo route and catch-all 404 around event-ingest's routes. */
function h3App({ base, guard, errors }: HostSetup): H3 {
  const app = new H3({
    onError(error) {
      // h3 tells its error hook of every 404 too: the host records what would be its 500s.
      if (error.status < 500) return
      errors.push(error)
      return new Response(JSON.stringify({ host: 'error' }), { status: 500, headers: { 'content-type': 'application/json' } })
    },
  })
  if (guard) {
    app.use((event) => {
      if (event.url.pathname.startsWith(`${base}/admin`)) return new Response(JSON.stringify({ host: 'login first' }), { status: 401, headers: { 'content-type': 'application/json' } })
    })
  }
  app.post('/host/echo', async (event) => ({ echo: await event.req.json() }))
  return app
}

function notFound(app: H3): H3 {
  return app.all('/**', () => new Response(JSON.stringify({ host: 'not found' }), { status: 404, headers: { 'content-type': 'application/json' } }))
}

async function serveH3(app: H3, base: string) {
  const server = createServer(toNodeHandler(app))
  const url = await listen(server)
  return { url: url + base, close: () => closeServer(server) }
}

export const h3Host: HostFactory = {
  name: 'h3',
  async start(ingest, setup) {
    const app = h3App(setup).register(eventIngestPlugin(ingest, { base: setup.base }))
    return serveH3(notFound(app), setup.base)
  },
}

/** h3 with the standalone sub-app mounted, as the README shows it: `app.mount(base, createEventIngestApp(ingest))`. */
export const h3MountHost: HostFactory = {
  name: 'h3 app.mount()',
  async start(ingest, setup) {
    const app = h3App(setup).mount(setup.base, createEventIngestApp(ingest))
    return serveH3(notFound(app), setup.base)
  },
}

/** Starts a host with a fresh core. The core's env is empty unless given, so the machine's variables never leak in. */
export async function startHost(factory: HostFactory, options: EventIngestOptions<any> = {}, base = '', setup: { guard?: boolean } = {}): Promise<RunningHost> {
  const ingest = createEventIngest({ env: {}, ...options })
  await ingest.ready()
  const errors: unknown[] = []
  const host = await factory.start(ingest, { base, errors, ...setup })
  return {
    url: host.url,
    origin: new URL(host.url).origin,
    ingest,
    errors,
    async close() {
      await host.close()
      await ingest.close()
    },
  }
}
