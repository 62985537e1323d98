// Compiled by test/types/tsconfig.older-majors.json, where `express` and `koa` resolve to the
// Express 4 and Koa 2 type packages: the adapters' own sources must compile against them, and
// their handlers must mount in apps of those majors.
import express from 'express'
import Koa from 'koa'
import { createEventIngest } from 'event-ingest'
import { eventIngest as expressIngest } from 'event-ingest/express'
import { eventIngest as koaIngest, eventIngestErrors as koaIngestErrors } from 'event-ingest/koa'

const ingest = createEventIngest()
const app = express()
app.use(express.json({ limit: '1mb' }))
app.use('/api', expressIngest(ingest))
new Koa().use(koaIngestErrors(ingest, { base: '/api' }))
new Koa().use(koaIngest(ingest, { base: '/api' }))
