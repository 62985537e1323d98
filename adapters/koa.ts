import type { Middleware } from 'koa'
import type { EventIngest } from '../src/index'
import { nodeBody } from '../src/node-request'

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
 * one is read here with the byte limit.
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
  const base = options.base && options.base !== '/' ? `/${options.base.replace(/^\/+|\/+$/g, '')}` : ''
  return async (ctx, next) => {
    if (base && ctx.path !== base && !ctx.path.startsWith(`${base}/`)) return next()
    const path = ctx.path.slice(base.length) || '/'
    if (!ingest.owns(path)) return next()
    const parsed = (ctx.request as { body?: unknown }).body
    const response = await ingest.handle({ method: ctx.method, path, query: ctx.querystring, headers: ctx.headers, body: nodeBody(ctx.req, parsed) })
    if (!response) return next()
    ctx.status = response.status
    ctx.set(response.headers)
    ctx.body = ctx.method === 'HEAD' ? null : response.body
  }
}
