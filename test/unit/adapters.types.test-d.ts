import express, { type ErrorRequestHandler, type RequestHandler } from 'express'
import Koa, { type Middleware } from 'koa'
import Fastify from 'fastify'
import { H3, type H3Plugin } from 'h3'
import { describe, expectTypeOf, it } from 'vitest'
import { createEventIngest, type EventIngest } from 'event-ingest'
import { eventIngest as expressIngest } from 'event-ingest/express'
import { eventIngest as koaIngest, eventIngestErrors as koaIngestErrors, type KoaEventIngestOptions } from 'event-ingest/koa'
import { eventIngest as fastifyIngest, type FastifyEventIngestOptions } from 'event-ingest/fastify'
import { eventIngestPlugin, createEventIngestApp, type H3EventIngestOptions } from 'event-ingest/h3'

const ingest = createEventIngest()

describe('adapter types', () => {
  it('express: a handler and an error handler that app.use() takes', () => {
    expectTypeOf(expressIngest).parameter(0).toEqualTypeOf<EventIngest<any>>()
    expectTypeOf(expressIngest(ingest)).toEqualTypeOf<[RequestHandler, ErrorRequestHandler]>()
    express().use('/api', expressIngest(ingest))
  })

  it('koa: a Koa middleware with a typed base option', () => {
    expectTypeOf(koaIngest(ingest)).toEqualTypeOf<Middleware>()
    expectTypeOf<KoaEventIngestOptions>().toEqualTypeOf<{ base?: string }>()
    new Koa().use(koaIngest(ingest, { base: '/api' }))
    // @ts-expect-error base is a string
    koaIngest(ingest, { base: 1 })
    expectTypeOf(koaIngestErrors(ingest)).toEqualTypeOf<Middleware>()
    new Koa().use(koaIngestErrors(ingest, { base: '/api' }))
  })

  it('fastify: a plugin registered with a prefix and the core', async () => {
    expectTypeOf<FastifyEventIngestOptions>().toEqualTypeOf<{ ingest: EventIngest<any> }>()
    const app = Fastify()
    await app.register(fastifyIngest, { prefix: '/api', ingest })
    // @ts-expect-error the core is required
    await app.register(fastifyIngest, { prefix: '/api' })
  })

  it('h3: a plugin and a sub-app', () => {
    expectTypeOf(eventIngestPlugin(ingest)).toEqualTypeOf<H3Plugin>()
    expectTypeOf<H3EventIngestOptions>().toEqualTypeOf<{ base?: string }>()
    expectTypeOf(createEventIngestApp(ingest)).toEqualTypeOf<H3>()
    new H3().register(eventIngestPlugin(ingest, { base: '/api' }))
  })
})
