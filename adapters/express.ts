import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'
import { IngestError, type EventIngest, type IngestHttpResponse } from '../src/index'
import { nodeBody, nodeQuery } from '../src/node-request'

function send(res: Response, response: IngestHttpResponse): void {
  res.status(response.status).set(response.headers).send(response.body)
}

/**
 * Maps the errors of a host body parser (express.json(), express.text(), express.raw()) met on
 * event-ingest's routes to the contract. body-parser inflates gzip, deflate and br itself, so its
 * decoding failures are the body's too.
 */
function parserError(error: unknown): IngestError | undefined {
  const failure = error as { type?: string; status?: number; code?: unknown; encoding?: unknown; charset?: unknown } | null
  const type = failure?.type
  if (type === 'entity.parse.failed') return new IngestError('invalid_json', `body is not valid JSON: ${(error as Error).message}`)
  if (type === 'entity.too.large') {
    const limit = (error as { limit?: number }).limit ?? 0
    return new IngestError('body_too_large', `the body is over the host body parser's limit of ${limit} bytes`, { limit: 'hostParserLimit', value: limit })
  }
  if (type === 'encoding.unsupported') {
    const name = String(failure?.encoding ?? '')
    return new IngestError('unsupported_encoding', `content-encoding ${JSON.stringify(name)} is not supported by the host body parser`, { contentEncoding: name })
  }
  if (type === 'charset.unsupported') {
    const charset = String(failure?.charset ?? '')
    return new IngestError('unsupported_media_type', `content-type charset ${JSON.stringify(charset)} is not supported; send UTF-8`, { charset })
  }
  // A body that does not inflate: zlib's error, given status 400 by body-parser.
  if (failure?.status === 400 && typeof failure.code === 'string' && /^(Z_|ERR_BROTLI|ERR__)/.test(failure.code)) {
    return new IngestError('invalid_json', `body is not valid data of its content-encoding: ${(error as Error).message}`)
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
  // The parser's refusal goes through the core like any of its own: the token is checked first,
  // and the refusal is answered in the contract's format and counted in stats.
  const errors: ErrorRequestHandler = (error, req, res, next) => {
    const mapped = parserError(error)
    if (!mapped || !ingest.owns(req.path)) return next(error)
    ingest
      .handle({ method: req.method, path: req.path, query: nodeQuery(req.url), headers: req.headers, body: { refused: mapped } })
      .then((response) => {
        if (!response) return next(error)
        // The parser may have stopped reading part way (an encoding it does not know): close.
        send(res, { ...response, headers: { ...response.headers, connection: 'close' } })
      }, next)
  }
  return [handler, errors]
}
