import { H3, HTTPError, type H3Event, type H3Plugin } from 'h3'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { EventIngest } from './ingest'
import { routes, type IngestHttpRequest, type IngestHttpResponse } from './http'
import { closeIfUnread } from './node-request'
import { normaliseBase, pathBelow } from './request-path'

/** Options of the h3 handlers. */
export interface H3EventIngestOptions {
  /**
   * Path prefix the routes are mounted under, like `/api`.
   * @default ''
   */
  base?: string
}

/** The request target as the client sent it: h3 decodes needless escapes in `event.url`, the raw target keeps them. */
function rawTarget(event: H3Event): string {
  const node = event.runtime?.node?.req as IncomingMessage | undefined
  if (node?.url !== undefined) return node.url
  const url = event.req.url
  const start = url.indexOf('/', url.indexOf('//') + 2)
  return start < 0 ? '/' : url.slice(start)
}

/**
 * The route path of a request below `base`, as sent; `undefined` when the request is not spelled
 * exactly as a route. Under `app.mount(prefix, createEventIngestApp(ingest))`, h3 registers the
 * sub-app's routes as `prefix + route` and leaves `event.url` whole: the route that matched tells
 * the prefix, so the same check holds there.
 */
function requestPath(event: H3Event, base: string): string | undefined {
  const target = rawTarget(event)
  const matched = (event.context.matchedRoute as { route?: string } | undefined)?.route
  if (matched !== undefined && !matched.includes(':') && !matched.includes('*')) {
    for (const route of Object.values(routes)) {
      if (!matched.endsWith(`${base}${route}`)) continue
      return pathBelow(target, matched.slice(0, matched.length - route.length))
    }
  }
  return pathBelow(target, base)
}

/**
 * Translates an h3 event into the core's neutral request. On Node the raw request stream is read
 * directly (no web-stream detour). `path` is empty (no route) when the request is not spelled
 * exactly as one of the routes below `base`.
 */
export function toIngestRequest(event: H3Event, base = ''): IngestHttpRequest {
  const path = requestPath(event, normaliseBase(base)) ?? ''
  const node = event.runtime?.node?.req as IncomingMessage | undefined
  const method = event.req.method
  let body: IngestHttpRequest['body']
  if (method === 'POST') {
    if (node && !node.readableEnded) body = { stream: node }
    else if (event.req.body && !event.req.bodyUsed) body = { stream: event.req.body as unknown as AsyncIterable<Uint8Array> }
  }
  return { method, path, query: event.url.search, headers: event.req.headers, body }
}

/** Turns the core's neutral response into a web `Response`. */
export function toWebResponse(response: IngestHttpResponse, method: string): Response {
  const empty = method === 'HEAD' || response.status === 204 || response.status === 304
  return new Response(empty ? null : response.body, { status: response.status, headers: response.headers })
}

/**
 * An h3 handler serving every event-ingest route below `base`. Register it for each route, or use
 * {@link eventIngestPlugin} which does so. A request spelled otherwise than a route exactly (an
 * escaped letter, a `.` segment, another case) gets h3's 404.
 */
export function defineEventIngestHandler(ingest: EventIngest<any>, options: H3EventIngestOptions = {}) {
  const base = normaliseBase(options.base)
  return async (event: H3Event): Promise<string | Response> => {
    const request = toIngestRequest(event, base)
    const response = ingest.owns(request.path) ? await ingest.handle(request) : undefined
    if (!response) throw new HTTPError({ status: 404 })
    // Status and headers staged on the event, the body returned as text: h3 then sends it through
    // srvx's fast response path (a web Response costs more on Node). HEAD and 204 get no body.
    event.res.status = response.status
    const node = event.runtime?.node as { req?: IncomingMessage; res?: ServerResponse } | undefined
    const headers = node?.req ? closeIfUnread(node.req, response.headers, ingest.refusalDrain) : response.headers
    const staged = event.res.headers
    for (const name in headers) staged.set(name, headers[name]!)
    return response.body
  }
}

/**
 * An h3 plugin that mounts `POST /events/ingest`, `GET /events/schema`, `GET /admin/events/stats`
 * and `GET /admin/events` under `base`.
 *
 * @example
 * import { H3, serve } from 'h3'
 * import { createEventIngest } from 'event-ingest'
 * import { eventIngestPlugin } from 'event-ingest/h3'
 *
 * const ingest = createEventIngest()
 * const app = new H3().register(eventIngestPlugin(ingest, { base: '/api' }))
 * serve(app, { port: 3000 })
 */
export function eventIngestPlugin(ingest: EventIngest<any>, options: H3EventIngestOptions = {}): H3Plugin {
  const base = normaliseBase(options.base)
  const handler = defineEventIngestHandler(ingest, options)
  return (app) => {
    for (const route of Object.values(routes)) app.all(`${base}${route}`, handler)
  }
}

/**
 * A standalone h3 app with the event-ingest routes (below `base`), to serve on its own or mount in
 * another app.
 *
 * @example
 * const app = new H3().mount('/api', createEventIngestApp(ingest)) // POST /api/events/ingest, …
 */
export function createEventIngestApp(ingest: EventIngest<any>, options: H3EventIngestOptions = {}): H3 {
  return new H3().register(eventIngestPlugin(ingest, options))
}
