import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { EventIngest } from '../src/index'
import { handBatch, handBatchJsonSchema, type HandStore } from './hand'
import { INGEST_PATH, type Target } from './targets'

/** A server listening on loopback. */
export interface RunningApp {
  port: number
  close(): Promise<void>
}

/** Where the bare routes keep what they parsed: a fixed-size ring, so memory stays bounded. */
export interface EventRing {
  keep(events: unknown[]): void
  /** Events kept since start. */
  readonly received: number
}

export function createEventRing(size = 10_000): EventRing {
  const slots = new Array<unknown>(size)
  let head = 0
  let received = 0
  return {
    keep(events) {
      for (const event of events) {
        slots[head] = event
        head = head + 1 === size ? 0 : head + 1
      }
      received += events.length
    },
    get received() {
      return received
    },
  }
}

/** The answer of a bare route: the same shape as event-ingest's 200 body. */
const accepted = (count: number) => ({ accepted: count, duplicates: 0, rejected: [] as unknown[] })
const notAnArray = { code: 'not_an_array', message: 'body must be a JSON array of events' }
const jsonType = 'application/json; charset=utf-8'

function listen(server: Server): Promise<RunningApp> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
          }),
      })
    })
  })
}

/**
 * Bare `node:http`: read the body, `JSON.parse`, check for an array, keep it, 200. With
 * `keepBodies`, every body is also kept as the bytes received, for the life of the process, as the
 * memory driver keeps them: the memory a server that stores what it receives must take. The bare
 * routes of the frameworks keep theirs the same way when the target says so, each as its framework
 * hands the body over.
 */
function bareNode(ring: EventRing, keepBodies = false): Server {
  const bodies: Buffer[] = []
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST' || req.url !== INGEST_PATH) {
      res.writeHead(404).end()
      return
    }
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      let value: unknown
      const body = Buffer.concat(chunks)
      try {
        value = JSON.parse(body.toString('utf8'))
      } catch {
        res.writeHead(400, { 'content-type': jsonType }).end(JSON.stringify({ code: 'invalid_json' }))
        return
      }
      if (!Array.isArray(value)) {
        res.writeHead(400, { 'content-type': jsonType }).end(JSON.stringify(notAnArray))
        return
      }
      ring.keep(value)
      if (keepBodies) bodies.push(body)
      res.writeHead(200, { 'content-type': jsonType }).end(JSON.stringify(accepted(value.length)))
    })
  })
}

/** A module of the package as built for the run, typed as its source. */
export function importBuilt<T>(buildDir: string, file: string): Promise<T> {
  return import(pathToFileURL(join(buildDir, file)).href) as Promise<T>
}

/**
 * Starts `target` on 127.0.0.1 with a free port. `ingest` is required for event-ingest targets.
 * Only the framework in use is imported, so a server process starts quickly and loads nothing else.
 */
export async function startApp(target: Target, ring: EventRing, ingest: EventIngest<any> | undefined, buildDir: string, hand?: HandStore): Promise<RunningApp> {
  if (target.kind === 'ours' && !ingest) throw new Error(`${target.id}: an event-ingest target needs a core`)
  if (target.kind === 'hand') {
    if (!hand) throw new Error(`${target.id}: a hand-written route needs its store`)
    return startHand(target, hand)
  }
  switch (target.framework) {
    case 'node':
      return listen(bareNode(ring, target.keepsBodies))
    case 'h3': {
      const [{ H3 }, { toNodeHandler }, { eventIngestPlugin }] = await Promise.all([import('h3'), import('h3/node'), importBuilt<typeof import('../adapters/h3')>(buildDir, 'adapters/h3.mjs')])
      const app = new H3()
      if (target.kind === 'ours') {
        app.register(eventIngestPlugin(ingest!))
      } else {
        // Keeping: h3's own reading as text (what its json() does), then the same parse.
        const bodies: string[] = []
        app.post(INGEST_PATH, async (event) => {
          const text = target.keepsBodies ? await event.req.text() : undefined
          const value: unknown = text === undefined ? await event.req.json() : JSON.parse(text)
          if (!Array.isArray(value)) return new Response(JSON.stringify(notAnArray), { status: 400, headers: { 'content-type': jsonType } })
          ring.keep(value)
          if (text !== undefined) bodies.push(text)
          return accepted(value.length)
        })
      }
      return listen(createServer(toNodeHandler(app)))
    }
    case 'express': {
      const [{ default: express }, { eventIngest: expressIngest }] = await Promise.all([import('express'), importBuilt<typeof import('../adapters/express')>(buildDir, 'adapters/express.mjs')])
      const app = express()
      if (target.kind === 'ours') {
        app.use('/', expressIngest(ingest!))
      } else {
        // Keeping: the raw bytes express.json() read, handed over by its verify hook.
        const bodies: Buffer[] = []
        const verify = target.keepsBodies ? (req: object, _res: unknown, raw: Buffer) => void ((req as { keptBody?: Buffer }).keptBody = raw) : undefined
        app.post(INGEST_PATH, express.json({ limit: '1mb', verify }), (req, res) => {
          const value: unknown = req.body
          if (!Array.isArray(value)) {
            res.status(400).json(notAnArray)
            return
          }
          ring.keep(value)
          const raw = (req as unknown as { keptBody?: Buffer }).keptBody
          if (raw) bodies.push(raw)
          res.json(accepted(value.length))
        })
      }
      return listen(createServer(app))
    }
    case 'fastify': {
      const [{ default: Fastify }, { eventIngest: fastifyIngest }] = await Promise.all([import('fastify'), importBuilt<typeof import('../adapters/fastify')>(buildDir, 'adapters/fastify.mjs')])
      const app = Fastify()
      if (target.kind === 'ours') {
        await app.register(fastifyIngest, { ingest: ingest! })
      } else {
        const bodies: Buffer[] = []
        if (target.keepsBodies) {
          // Keeping: Fastify's own JSON parser, with the instance's settings, fed the raw bytes.
          const { onProtoPoisoning, onConstructorPoisoning } = app.initialConfig
          const json = app.getDefaultJsonParser(onProtoPoisoning ?? 'error', onConstructorPoisoning ?? 'error')
          app.removeContentTypeParser('application/json')
          app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, raw, done) => {
            ;(request as unknown as { keptBody?: Buffer }).keptBody = raw as Buffer
            // secure-json-parse, under it, takes a Buffer as well as a string.
            json(request, raw as unknown as string, done)
          })
        }
        app.post(INGEST_PATH, async (request, reply) => {
          const value: unknown = request.body
          if (!Array.isArray(value)) return reply.code(400).send(notAnArray)
          ring.keep(value)
          const raw = (request as unknown as { keptBody?: Buffer }).keptBody
          if (raw) bodies.push(raw)
          return accepted(value.length)
        })
      }
      await app.listen({ port: 0, host: '127.0.0.1' })
      return { port: (app.server.address() as AddressInfo).port, close: () => app.close() }
    }
    case 'koa': {
      const [{ default: Koa }, { bodyParser }, { eventIngest: koaIngest }] = await Promise.all([import('koa'), import('@koa/bodyparser'), importBuilt<typeof import('../adapters/koa')>(buildDir, 'adapters/koa.mjs')])
      const app = new Koa()
      app.silent = true
      if (target.kind === 'ours') {
        app.use(koaIngest(ingest!))
      } else {
        const bodies: string[] = []
        app.use(bodyParser({ jsonLimit: '1mb' }))
        app.use(async (ctx, next) => {
          if (ctx.method !== 'POST' || ctx.path !== INGEST_PATH) return next()
          const value: unknown = (ctx.request as { body?: unknown }).body
          if (!Array.isArray(value)) {
            ctx.status = 400
            ctx.body = notAnArray
            return
          }
          ring.keep(value)
          // Keeping: the text @koa/bodyparser read and hands over as rawBody.
          if (target.keepsBodies) bodies.push((ctx.request as { rawBody?: string }).rawBody!)
          ctx.body = accepted(value.length)
        })
      }
      return listen(createServer(app.callback()))
    }
  }
}

const invalid = (issues: unknown) => ({ code: 'invalid', message: 'body must be an array of valid events', issues })

/**
 * The hand-written route of `target.framework` (bench/hand.ts): the framework's own JSON body
 * reading and schema validation, then dedupe and keep through `store`.
 */
async function startHand(target: Target, store: HandStore): Promise<RunningApp> {
  switch (target.framework) {
    case 'h3': {
      const [{ H3 }, { toNodeHandler }] = await Promise.all([import('h3'), import('h3/node')])
      const app = new H3()
      app.post(INGEST_PATH, async (event) => {
        const parsed = handBatch.safeParse(await event.req.json())
        if (!parsed.success) return new Response(JSON.stringify(invalid(parsed.error.issues)), { status: 400, headers: { 'content-type': jsonType } })
        const kept = await store.keep(parsed.data)
        return { accepted: kept, duplicates: parsed.data.length - kept, rejected: [] }
      })
      return listen(createServer(toNodeHandler(app)))
    }
    case 'express': {
      const { default: express } = await import('express')
      const app = express()
      app.post(INGEST_PATH, express.json({ limit: '1mb' }), async (req, res) => {
        const parsed = handBatch.safeParse(req.body)
        if (!parsed.success) {
          res.status(400).json(invalid(parsed.error.issues))
          return
        }
        const kept = await store.keep(parsed.data)
        res.json({ accepted: kept, duplicates: parsed.data.length - kept, rejected: [] })
      })
      return listen(createServer(app))
    }
    case 'fastify': {
      const { default: Fastify } = await import('fastify')
      const app = Fastify()
      app.post(INGEST_PATH, { schema: { body: handBatchJsonSchema } }, async (request) => {
        const events = request.body as { id: string }[]
        const kept = await store.keep(events)
        return { accepted: kept, duplicates: events.length - kept, rejected: [] }
      })
      await app.listen({ port: 0, host: '127.0.0.1' })
      return { port: (app.server.address() as AddressInfo).port, close: () => app.close() }
    }
    case 'koa': {
      const [{ default: Koa }, { bodyParser }] = await Promise.all([import('koa'), import('@koa/bodyparser')])
      const app = new Koa()
      app.silent = true
      app.use(bodyParser({ jsonLimit: '1mb' }))
      app.use(async (ctx, next) => {
        if (ctx.method !== 'POST' || ctx.path !== INGEST_PATH) return next()
        const parsed = handBatch.safeParse((ctx.request as { body?: unknown }).body)
        if (!parsed.success) {
          ctx.status = 400
          ctx.body = invalid(parsed.error.issues)
          return
        }
        const kept = await store.keep(parsed.data)
        ctx.body = { accepted: kept, duplicates: parsed.data.length - kept, rejected: [] }
      })
      return listen(createServer(app.callback()))
    }
    default:
      throw new Error(`${target.id}: no hand-written route for ${target.framework}`)
  }
}
