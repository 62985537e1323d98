import { H3, HTTPError, type H3Event, type H3Plugin } from 'h3'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { routes } from '../src/http/handler'
import type { EventIngest, IngestHttpRequest, IngestHttpResponse } from '../src/core/types'
import { closeIfUnread, nodeRemoteAddress } from '../src/http/node-request'
import { normaliseBase, pathBelow } from '../src/http/request-path'

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
    const kept = keptBodies.get(event.req)
    if (kept) body = { stream: keptStream(kept) }
    else if (node && !node.readableEnded) body = { stream: node }
    else if (event.req.body && !event.req.bodyUsed) body = { stream: event.req.body as unknown as AsyncIterable<Uint8Array> }
  }
  // srvx's `ip` off Node (Bun, Deno).
  const remoteAddress = node ? nodeRemoteAddress(node) : (event.req as { ip?: string }).ip
  return { method, path, query: event.url.search, headers: event.req.headers, remoteAddress, body }
}

/** Bodies of ingest requests that a host middleware read before the handler ran, as bytes. */
const keptBodies = new WeakMap<object, Promise<Uint8Array>>()

const textDecoder = new TextDecoder()

/** What {@link keepBody} puts on a request: its own reader of the bytes, and their reading once started. */
interface KeepingRequest {
  [ownArrayBuffer]: () => Promise<ArrayBuffer>
  /** The request as the handler sees it (`event.req`): through a proxy that binds methods to its target, `this` is the target. */
  [keptFor]: object
  [reading]?: Promise<Uint8Array>
}

const ownArrayBuffer = Symbol('event-ingest.arrayBuffer')
const keptFor = Symbol('event-ingest.keptFor')
const reading = Symbol('event-ingest.reading')

/** The body's bytes, read once for every reader of a request under {@link keepBody}. */
function readOnce(req: KeepingRequest): Promise<Uint8Array> {
  let read = req[reading]
  if (!read) {
    read = req[ownArrayBuffer]().then((buffer) => new Uint8Array(buffer))
    req[reading] = read
    keptBodies.set(req[keptFor], read)
  }
  return read
}

// Each reader gets its own copy, as native bodies do; the text is decoded as `Request.text()` does.
// One set of functions for every request (they find the request as `this`, as the native methods
// do: called detached, they throw like them), so keeping a body costs a request no closures.
const keptReaders = {
  arrayBuffer(this: KeepingRequest) {
    return readOnce(this).then((bytes) => bytes.slice().buffer)
  },
  bytes(this: KeepingRequest) {
    return readOnce(this).then((bytes) => bytes.slice())
  },
  text(this: KeepingRequest) {
    return readOnce(this).then((bytes) => textDecoder.decode(bytes))
  },
  json(this: KeepingRequest) {
    return readOnce(this).then((bytes) => JSON.parse(textDecoder.decode(bytes)) as unknown)
  },
}

/**
 * Lets a host middleware read the body of an ingest request and the handler read it after: h3 and
 * srvx keep nothing of a body once read, so the request's `text()`, `json()`, `arrayBuffer()` and
 * `bytes()` (what `readBody(event)` calls) are made to read it once, as bytes, which the handler
 * then takes as sent (with every limit, the content encoding and the UTF-8 check). A body read
 * from `event.req.body` directly is not kept.
 */
function keepBody(req: H3Event['req']): void {
  // Kept already (the plugin twice on one app, or two apps on the request's way).
  if (ownArrayBuffer in req) return
  const keeping = req as unknown as KeepingRequest & typeof keptReaders
  keeping[ownArrayBuffer] = req.arrayBuffer
  keeping[keptFor] = req
  keeping.arrayBuffer = keptReaders.arrayBuffer
  keeping.bytes = keptReaders.bytes
  keeping.text = keptReaders.text
  keeping.json = keptReaders.json
}

async function* keptStream(kept: Promise<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield await kept
}

/**
 * Keeps the body of ingest requests to `path` for the handler, from the start of each request
 * (h3's `onRequest` hook, which runs before any middleware, chained with the host's own).
 */
function keepIngestBodies(app: H3, path: string): void {
  const hostHook = app.config.onRequest
  app.config.onRequest = (event) => {
    if (event.req.method === 'POST') {
      const pathname = event.url.pathname
      if (pathname === path || pathname === `${path}/`) keepBody(event.req)
    }
    return hostHook?.(event)
  }
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
 * An h3 plugin that mounts `POST /events/ingest`, `GET /events/schema`, `GET /admin/events/stats`,
 * `GET /admin/events`, `GET /admin/events/dead-letters` and `POST /admin/events/requeue` under
 * `base`. A host middleware may read an ingest body first
 * (`readBody(event)`, `event.req.json()`, `text()`, `arrayBuffer()`, `bytes()`): the body it read
 * is kept for the handler (through the app's `onRequest` hook, chained with any of the host's).
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
    keepIngestBodies(app, `${base}${routes.ingest}`)
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
