import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'
import type { EventIngest, IngestHttpResponse, RefusalDrain } from '../src/index'
import { hostParserError } from '../src/http/host-parser-errors'
import { closeIfUnread, nodeBody, nodeQuery, nodeRemoteAddress } from '../src/http/node-request'
import { pathBelow } from '../src/http/request-path'

function send(req: Request, res: Response, drain: Readonly<RefusalDrain>, status: number, headers: Record<string, string>, body: string): void {
  res.status(status).set(closeIfUnread(req, headers, drain)).send(body)
}

/**
 * A segment of a mount path Express may have matched for another spelling: percent-encoded, `.`
 * or `..`, empty, or (Express matches paths case-insensitively unless `case sensitive routing`
 * is on) holding a capital letter.
 */
const loose = /\/\/|\/\.{1,2}(?:\/|$)|%/
const capital = /[A-Z]/

/**
 * The route path of a request, as sent, when the mount path Express matched (`req.baseUrl`, the
 * characters the request carried) is in its one canonical spelling; `undefined` otherwise.
 */
function routePath(req: Request): string | undefined {
  const base = req.baseUrl
  if (loose.test(base) || (capital.test(base) && !req.app.enabled('case sensitive routing'))) return undefined
  return pathBelow(req.originalUrl, base)
}

/**
 * Express (4.17+ or 5) middleware serving the event-ingest routes. Mount it with `app.use()` (optionally under
 * a path); requests to other paths pass through untouched. Works with or without `express.json()`
 * in front: a parsed body is used as is (limits still apply), an unread one is read here with the
 * byte limit. The second handler answers a host parser's errors on these routes in the contract's
 * JSON format; everything else goes on to your error middleware.
 *
 * A route is served under one spelling only, the mount path and the route exactly as written
 * (lowercase mount paths unless the app enables `case sensitive routing`); any other passes through.
 *
 * @example
 * import express from 'express'
 * import { createEventIngest } from 'event-ingest'
 * import { eventIngest } from 'event-ingest/express'
 *
 * const app = express()
 * app.use('/api', eventIngest(createEventIngest()))
 * app.listen(3000)
 */
export function eventIngest(ingest: EventIngest<any>): [RequestHandler, ErrorRequestHandler] {
  const handler: RequestHandler = (req: Request, res: Response, next: NextFunction) => {
    const path = routePath(req)
    if (path === undefined || !ingest.owns(path)) return next()
    ingest
      .handle({ method: req.method, path, query: nodeQuery(req.url), headers: req.headers, remoteAddress: nodeRemoteAddress(req), body: nodeBody(req, req.body) })
      .then((response: IngestHttpResponse | undefined) => (response ? send(req, res, ingest.refusalDrain, response.status, response.headers, response.body) : next()), next)
  }
  // The parser's refusal goes through the core like any of its own: the token is checked first,
  // and the refusal is answered in the contract's format and counted in stats.
  const errors: ErrorRequestHandler = (error, req, res, next) => {
    const mapped = hostParserError(error)
    const path = routePath(req)
    if (!mapped || path === undefined || !ingest.owns(path)) return next(error)
    const aborted = mapped.code === 'request_aborted'
    ingest
      .handle({ method: req.method, path, query: nodeQuery(req.url), headers: req.headers, remoteAddress: nodeRemoteAddress(req), body: { refused: mapped } })
      .then((response: IngestHttpResponse | undefined) => {
        // A client that went away is counted, gets no answer, and the host's error middleware is not bothered.
        if (aborted) return
        if (!response) return next(error)
        // Closed only if the parser stopped reading part way; body-parser reads a refused body to its end.
        send(req, res, ingest.refusalDrain, response.status, response.headers, response.body)
      }, next)
  }
  return [handler, errors]
}
