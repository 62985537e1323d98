import { createServer } from 'node:http'
import express, { type ErrorRequestHandler } from 'express'
import express4 from 'express4'
import Koa from 'koa'
import Koa2 from 'koa2'
import { bodyParser } from '@koa/bodyparser'
import Fastify from 'fastify'
import { eventIngest as expressIngest } from '../../adapters/express'
import { eventIngest as koaIngest, eventIngestErrors as koaIngestErrors } from '../../adapters/koa'
import { eventIngest as fastifyIngest } from '../../adapters/fastify'
import { closeServer, h3Host, listen, type HostFactory } from './servers'

/** An Express major the suite runs on: 5 (`express`) or 4 (the `express4` alias). */
type ExpressModule = typeof express | typeof express4

/** A Koa major the suite runs on: 3 (`koa`) or 2 (the `koa2` alias). */
type KoaClass = typeof Koa | typeof Koa2

/**
 * Every host the conformance suite runs against: each framework, with and without its own body
 * parser in front, on the framework majors the peer ranges allow. Each host also serves its own
 * JSON route (`POST /host/echo`) and a 404 of its own, to show mounting leaves them alone.
 */
export const expressHost = (hostParser: boolean, major: 4 | 5 = 5): HostFactory => ({
  name: `${major === 5 ? 'express' : 'express 4'}${hostParser ? ' + express.json()' : ''}`,
  hostReadsBody: hostParser,
  hostParserLimit: 10 * 1024 * 1024,
  // body-parser 1 (Express 4) has no brotli.
  ...(hostParser && major === 4 ? { hostDecodes: ['gzip', 'deflate', 'identity'] } : {}),
  async start(ingest, { base, guard, errors }) {
    const framework: ExpressModule = major === 5 ? express : express4
    const app = (framework as typeof express)()
    if (guard) {
      app.use((req, res, next) => (req.path.startsWith(`${base}/admin`) ? res.status(401).json({ host: 'login first' }) : next()))
    }
    if (hostParser) app.use(framework.json({ limit: '10mb' }))
    app.post('/host/echo', framework.json(), (req, res) => {
      res.json({ echo: req.body })
    })
    app.use(base || '/', expressIngest(ingest))
    app.use((_req, res) => {
      res.status(404).json({ host: 'not found' })
    })
    app.use(((error, _req, res, _next) => {
      errors.push(error)
      res.status(500).json({ host: 'error' })
    }) as ErrorRequestHandler)
    const server = createServer(app)
    const url = await listen(server)
    return { url: url + base, close: () => closeServer(server) }
  },
})

export const koaHost = (hostParser: boolean, major: 2 | 3 = 3): HostFactory => ({
  name: `${major === 3 ? 'koa' : 'koa 2'}${hostParser ? ' + @koa/bodyparser' : ''}`,
  hostReadsBody: hostParser,
  hostParserLimit: 10 * 1024 * 1024,
  async start(ingest, { base, guard, errors }) {
    const App: KoaClass = major === 3 ? Koa : Koa2
    const app = new (App as typeof Koa)()
    app.silent = true
    app.on('error', (error) => errors.push(error))
    // @koa/bodyparser throws its refusals upstream of event-ingest: answered here, in the contract.
    if (hostParser) app.use(koaIngestErrors(ingest, { base }))
    app.use(async (ctx, next) => {
      if (guard && ctx.path.startsWith(`${base}/admin`)) {
        ctx.status = 401
        ctx.body = { host: 'login first' }
        return
      }
      await next()
    })
    if (hostParser) app.use(bodyParser({ jsonLimit: '10mb' }))
    app.use(koaIngest(ingest, { base }))
    app.use(async (ctx, next) => {
      if (ctx.path === '/host/echo' && ctx.method === 'POST') {
        if (!hostParser) {
          let text = ''
          for await (const chunk of ctx.req) text += chunk
          ctx.body = { echo: JSON.parse(text) }
        } else {
          ctx.body = { echo: (ctx.request as { body?: unknown }).body }
        }
        return
      }
      await next()
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404
        ctx.body = { host: 'not found' }
      }
    })
    const server = createServer(app.callback())
    const url = await listen(server)
    return { url: url + base, close: () => closeServer(server) }
  },
})

export const fastifyHost = (hostParser: boolean): HostFactory => ({
  name: hostParser ? 'fastify + custom JSON parser' : 'fastify',
  async start(ingest, { base, guard, errors }) {
    const app = Fastify()
    app.setErrorHandler((error, _request, reply) => {
      errors.push(error)
      return reply.code(500).send({ host: 'error' })
    })
    if (guard) {
      app.addHook('onRequest', async (request, reply) => {
        if (request.url.startsWith(`${base}/admin`)) return reply.code(401).send({ host: 'login first' })
      })
    }
    if (hostParser) {
      // A host with its own JSON parser: the plugin's routes must not depend on it, and the host's routes keep it.
      app.removeContentTypeParser('application/json')
      app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
        try {
          done(null, { parsedByHost: true, value: JSON.parse(body as string) })
        } catch (error) {
          done(error as Error, undefined)
        }
      })
    }
    app.post('/host/echo', async (request) => ({ echo: hostParser ? (request.body as { value: unknown }).value : request.body }))
    app.setNotFoundHandler((_request, reply) => reply.code(404).send({ host: 'not found' }))
    await app.register(fastifyIngest, { prefix: base, ingest })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const address = app.server.address() as { port: number }
    return { url: `http://127.0.0.1:${address.port}${base}`, close: () => app.close() }
  },
})

export const allHosts: HostFactory[] = [
  h3Host,
  expressHost(false),
  expressHost(true),
  expressHost(false, 4),
  expressHost(true, 4),
  koaHost(false),
  koaHost(true),
  koaHost(false, 2),
  koaHost(true, 2),
  fastifyHost(false),
  fastifyHost(true),
]
