import type { IncomingMessage } from 'node:http'
import type { BodySource } from './body'

/**
 * The body of a Node request as the core wants it: the raw stream when nobody has read it yet, or
 * the value a host body parser left (`req.body`) once the stream was consumed. A consumed stream
 * is never read again.
 */
export function nodeBody(req: IncomingMessage, parsed: unknown): BodySource {
  const consumed = req.readableEnded || (req as IncomingMessage & { _body?: boolean })._body === true || (req.complete && !req.readable)
  return consumed ? { parsed } : { stream: req }
}

/** The query string of a Node request URL, without `?`. */
export function nodeQuery(url: string | undefined): string {
  if (!url) return ''
  const index = url.indexOf('?')
  return index < 0 ? '' : url.slice(index + 1)
}
