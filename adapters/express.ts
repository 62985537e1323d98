import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'
import { IngestError, type EventIngest, type IngestHttpResponse } from '../src/index'
import { nodeBody, nodeQuery } from '../src/node-request'

function send(res: Response, response: IngestHttpResponse): void {
  res.status(response.status).set(response.headers).send(response.body)
}

/** Maps the errors of a host body parser (express.json(), express.text()) met on event-ingest's routes to the contract. */
function parserError(error: unknown): IngestError | undefined {
  const type = (error as { type?: string } | null)?.type
  if (type === 'entity.parse.failed') return new IngestError('invalid_json', `body is not valid JSON: ${(error as Error).message}`)
  if (type === 'entity.too.large') {
    const limit = (error as { limit?: number }).limit ?? 0
    return new IngestError('body_too_large', `the body is over the host body parser's limit of ${limit} bytes`, { limit: 'hostParserLimit', value: limit })
  }
  return undefined
}

/**
 * Express (4.17+ or 5) middleware serving the event-ingest routes. Mount it with `app.use()` (optionally under
 * a path); requests to other paths pass through untouched. Works with or without `express.json()`
 * in front: a parsed body is used as is (limits still apply), an unread one is read here with the
 * byte limit. The second handler answers a host parser's errors on these routes in the contract's
 * JSON format; everything else goes on to your error middleware.
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
    ingest
      .handle({ method: req.method, path: req.path, query: nodeQuery(req.url), headers: req.headers, body: nodeBody(req, req.body) })
      .then((response) => (response ? send(res, response) : next()), next)
  }
  const errors: ErrorRequestHandler = (error, req, res, next) => {
    const mapped = parserError(error)
    if (!mapped || !ingest.owns(req.path)) return next(error)
    res.status(mapped.status).set({ 'content-type': 'application/json; charset=utf-8', connection: 'close' }).send(JSON.stringify(mapped.toJSON()))
  }
  return [handler, errors]
}
