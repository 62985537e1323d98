import type { Middleware } from 'koa'
import type { EventIngest } from '../src/index'
import { closeIfUnread, nodeBody } from '../src/node-request'
import { normaliseBase, pathBelow } from '../src/request-path'

/** Options of the Koa middleware. */
export interface KoaEventIngestOptions {
  /**
   * Path prefix the routes live under, like `/api`.
   * @default ''
   */
  base?: string
}

/**
 * Koa (2 or 3) middleware serving the event-ingest routes; other requests go on to `next()`. Mount it
 * before or after `@koa/bodyparser`: a parsed body (`ctx.request.body`) is used as is, an unread
 * one is read here with the byte limit. A route is served under one spelling only, `base` and the
 * route exactly as written; any other goes on to `next()`.
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
    const path = pathBelow(ctx.url, base)
    if (path === undefined || !ingest.owns(path)) return next()
    // Koa reports the socket error of a client that went away mid-upload to the app's error
    // handler; on these routes that is the end of the request (the core answers it, to no one).
    const onerror = ctx.onerror
    ctx.onerror = (error) => {
      if (error && !ctx.req.complete && ctx.req.socket.destroyed) return
      onerror.call(ctx, error)
    }
    const parsed = (ctx.request as { body?: unknown }).body
    const response = await ingest.handle({ method: ctx.method, path, query: ctx.querystring, headers: ctx.headers, body: nodeBody(ctx.req, parsed) })
    if (!response) return next()
    ctx.status = response.status
    ctx.set(closeIfUnread(ctx.req, response.headers, ingest.refusalDrain))
    ctx.body = ctx.method === 'HEAD' ? null : response.body
  }
}
