import type { Context, Middleware } from 'koa'
import type { EventIngest, IngestHttpRequest } from '../src/index'
import { hostParserError } from '../src/http/host-parser-errors'
import { closeIfUnread, nodeBody, nodeRemoteAddress } from '../src/http/node-request'
import { normaliseBase, pathBelow } from '../src/http/request-path'

/** Options of the Koa middlewares. */
export interface KoaEventIngestOptions {
  /**
   * Path prefix the routes live under, like `/api`.
   * @default ''
   */
  base?: string
}

/** The route path of a request below `base`, as sent, when it is one of event-ingest's routes. */
function ownPath(ingest: EventIngest<any>, ctx: Context, base: string): string | undefined {
  const path = pathBelow(ctx.url, base)
  return path !== undefined && ingest.owns(path) ? path : undefined
}

/**
 * Koa reports the socket error of a client that went away mid-upload to the app's error
 * handler; on these routes that is the end of the request (answered, if at all, to no one).
 */
function quietAbort(ctx: Context): void {
  const onerror = ctx.onerror
  ctx.onerror = (error) => {
    if (error && !ctx.req.complete && ctx.req.socket.destroyed) return
    onerror.call(ctx, error)
  }
}

/** Answers `request` through the core; `false` when the core has no answer for it. */
async function answer(ingest: EventIngest<any>, ctx: Context, request: IngestHttpRequest): Promise<boolean> {
  const response = await ingest.handle(request)
  if (!response) return false
  ctx.status = response.status
  ctx.set(closeIfUnread(ctx.req, response.headers, ingest.refusalDrain))
  ctx.body = ctx.method === 'HEAD' ? null : response.body
  return true
}

/**
 * Koa (2 or 3) middleware serving the event-ingest routes; other requests go on to `next()`. Mount it
 * before `@koa/bodyparser` to have event-ingest read its bodies itself, with its own limits (its
 * routes are answered there; every other request goes on to the parser). Behind a parser, a parsed
 * body (`ctx.request.body`) is used as is; mount {@link eventIngestErrors} in front of the parser
 * then, so that the parser's refusals keep the contract. A route is served under one spelling only,
 * `base` and the route exactly as written; any other goes on to `next()`.
 *
 * @example
 * import Koa from 'koa'
 * import { createEventIngest } from 'event-ingest'
 * import { eventIngest } from 'event-ingest/koa'
 *
 * const app = new Koa()
 * app.use(eventIngest(createEventIngest(), { base: '/api' }))
 * app.listen(3000)
 */
export function eventIngest(ingest: EventIngest<any>, options: KoaEventIngestOptions = {}): Middleware {
  const base = normaliseBase(options.base)
  return async (ctx, next) => {
    const path = ownPath(ingest, ctx, base)
    if (path === undefined) return next()
    quietAbort(ctx)
    const parsed = (ctx.request as { body?: unknown }).body
    const request = { method: ctx.method, path, query: ctx.querystring, headers: ctx.headers, remoteAddress: nodeRemoteAddress(ctx.req), body: nodeBody(ctx.req, parsed) }
    if (!(await answer(ingest, ctx, request))) return next()
  }
}

/**
 * Koa middleware answering, on event-ingest's routes, the errors of a body parser mounted after it
 * (`@koa/bodyparser`: malformed JSON, its own size limit, an encoding it does not know, a body that
 * does not inflate) as the core answers its own: after the token check, in the contract's JSON
 * format, counted in stats. A client that went away is counted and gets no answer. Any other error, and every
 * error on other paths, is rethrown untouched. Mount it first, with the same `base` as
 * {@link eventIngest}.
 *
 * @example
 * import Koa from 'koa'
 * import { bodyParser } from '@koa/bodyparser'
 * import { createEventIngest } from 'event-ingest'
 * import { eventIngest, eventIngestErrors } from 'event-ingest/koa'
 *
 * const ingest = createEventIngest()
 * const app = new Koa()
 * app.use(eventIngestErrors(ingest, { base: '/api' }))
 * app.use(bodyParser())
 * app.use(eventIngest(ingest, { base: '/api' }))
 */
export function eventIngestErrors(ingest: EventIngest<any>, options: KoaEventIngestOptions = {}): Middleware {
  const base = normaliseBase(options.base)
  return async (ctx, next) => {
    const path = ownPath(ingest, ctx, base)
    if (path === undefined) return next()
    quietAbort(ctx)
    try {
      await next()
    } catch (error) {
      const refused = hostParserError(error)
      if (!refused) throw error
      const request = { method: ctx.method, path, query: ctx.querystring, headers: ctx.headers, remoteAddress: nodeRemoteAddress(ctx.req), body: { refused } }
      // A client that went away is counted, and gets no answer.
      if (refused.code === 'request_aborted') {
        ctx.respond = false
        await ingest.handle(request)
        return
      }
      if (!(await answer(ingest, ctx, request))) throw error
    }
  }
}
