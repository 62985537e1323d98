import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { BodySource } from './body'
import type { RefusalDrain } from './types'

/**
 * The body of a Node request as the core wants it: the raw stream when nobody has read it yet, or
 * the value a host body parser left (`req.body`) once the stream was consumed. A consumed stream
 * is never read again.
 */
export function nodeBody(req: IncomingMessage, parsed: unknown): BodySource {
  const consumed = req.readableEnded || (req as IncomingMessage & { _body?: boolean })._body === true || (req.complete && !req.readable)
  return consumed ? { parsed } : { stream: req }
}

/** The address of a Node request's peer (the client, or the nearest proxy); the rate limits key on it. */
export function nodeRemoteAddress(req: IncomingMessage): string | undefined {
  return req.socket?.remoteAddress
}

/** The query string of a Node request URL, without `?`. */
export function nodeQuery(url: string | undefined): string {
  if (!url) return ''
  const index = url.indexOf('?')
  return index < 0 ? '' : url.slice(index + 1)
}

/**
 * The headers of an answer to `req`, with `connection: close` when its body is still arriving (a
 * refusal sent before the body was read). Such a connection is then closed once the answer is
 * written and the client has finished its body, or once `drain` is spent, whichever comes first:
 * the rest of the upload is never read.
 */
export function closeIfUnread(req: IncomingMessage, headers: Record<string, string>, drain: Readonly<RefusalDrain>): Record<string, string> {
  if (req.complete || req.socket.destroyed) return headers
  lingerThenClose(req, drain)
  return { ...headers, connection: 'close' }
}

/**
 * Node ends a `connection: close` answer with `socket.destroySoon()`: the write side ends, and the
 * socket is destroyed as soon as that is flushed. A client still sending its body then gets a
 * reset, often before it has read the answer (EPIPE, ECONNRESET). Here the write side ends the
 * same way (the client reads the answer and the end of the connection), the body goes on being
 * read and dropped, and the socket is destroyed once the client's body has ended or the drain
 * budget is spent (what nginx calls a lingering close).
 */
function lingerThenClose(req: IncomingMessage, drain: Readonly<RefusalDrain>): void {
  const socket = req.socket
  const state = { left: drain.maxBytes, flushed: false, drained: false }
  const close = () => {
    clearTimeout(timer)
    socket.destroy()
  }
  const timer = setTimeout(close, drain.maxMs)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
  const drained = () => {
    state.drained = true
    req.pause()
    if (state.flushed) close()
  }
  socket.destroySoon = function destroySoon(this: Socket) {
    const flushed = () => {
      state.flushed = true
      if (state.drained) close()
    }
    if (this.writable) this.end()
    if (this.writableFinished) flushed()
    else this.once('finish', flushed)
  }
  req.on('data', (chunk: Uint8Array) => {
    state.left -= chunk.length
    if (state.left < 0) drained()
  })
  req.once('end', drained)
  req.once('error', drained)
  req.resume()
}
