import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { EventIngest } from '../src/index'
import { routes } from '../src/index'
import { closeIfUnread, nodeRemoteAddress } from '../src/http/node-request'
import { pathBelow } from '../src/http/request-path'

/** Options of the Fastify plugin (register it with a `prefix` to mount under a path). */
export interface FastifyEventIngestOptions {
  /** The core to serve. */
  ingest: EventIngest<any>
}

/**
 * A Fastify 5 plugin serving the event-ingest routes. It stays encapsulated: inside it, bodies
 * reach the core as raw streams (read with the core's byte limit, text/plain beacons included),
 * while the host's routes keep their own content-type parsers.
 *
 * @example
 * import Fastify from 'fastify'
 * import { createEventIngest } from 'event-ingest'
 * import { eventIngest } from 'event-ingest/fastify'
 *
 * const app = Fastify()
 * await app.register(eventIngest, { prefix: '/api', ingest: createEventIngest() })
 * await app.listen({ port: 3000 })
 */
export const eventIngest: FastifyPluginAsync<FastifyEventIngestOptions> = async (fastify: FastifyInstance, options) => {
  const { ingest } = options
  if (!ingest || typeof ingest.handle !== 'function') {
    throw new TypeError('[event-ingest] the fastify plugin needs { ingest: createEventIngest(...) }')
  }
  // Scoped to this plugin: the body stays an unread stream, so the core applies its own limits.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', (_request, payload, done) => done(null, payload))

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    // Fastify matches a decoded path (and, as the host configures it, any case or doubled slashes):
    // only the spelling as written is served, anything else is the host's 404.
    const path = pathBelow(request.url, fastify.prefix)
    if (path === undefined || !ingest.owns(path)) return reply.callNotFound()
    const url = request.url
    const query = url.includes('?') ? url.slice(url.indexOf('?') + 1) : ''
    const body = request.body as AsyncIterable<Uint8Array> | undefined
    const response = await ingest.handle({
      method: request.method,
      path,
      query,
      headers: request.headers,
      remoteAddress: nodeRemoteAddress(request.raw),
      body: body && typeof (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function' ? { stream: body } : { stream: request.raw },
    })
    if (!response) return reply.callNotFound()
    return reply.code(response.status).headers(closeIfUnread(request.raw, response.headers, ingest.refusalDrain)).send(response.body)
  }
  // Fastify refuses a content type it cannot parse (" ", "/", "x") before any handler runs, in its
  // own format: on these routes the core answers it instead (in the contract's format, token first).
  fastify.setErrorHandler(async (error: FastifyError, request, reply) => {
    if (typeof error.code === 'string' && error.code.startsWith('FST_ERR_CTP_')) return handler(request, reply)
    throw error
  })
  for (const route of Object.values(routes)) {
    fastify.all(route, { bodyLimit: Number.MAX_SAFE_INTEGER }, handler)
  }
}
