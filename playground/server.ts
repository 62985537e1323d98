/**
 * The event-ingest playground: a tiny host app with event-ingest mounted, a dashboard at `/` and a
 * local sink at `/sink` and the event catalog at `/catalog`. A development tool, not a deployment: see the DEV ONLY notes below.
 *
 *   npm run playground                                   h3 on http://127.0.0.1:3000, memory storage
 *   FRAMEWORK=fastify PORT=4000 npm run playground       express | koa | fastify
 *   EVENT_STORAGE=fs:playground/.data npm run playground  or redis://127.0.0.1:6379/0
 *
 * Environment: FRAMEWORK, PORT (default 3000, 0 picks a free one), HOST (default 127.0.0.1),
 * SHUTDOWN_GRACE_MS (default 10000: how long SIGTERM/SIGINT lets requests in flight finish),
 * RATE_LIMITS (default on: 60 ingest requests a minute per address, 5000 events a minute per
 * source; `off` turns them off),
 * EVENT_STORAGE, EVENT_INGEST_TOKEN, EVENT_ADMIN_TOKEN, EVENT_REDACTION_SECRET (read by
 * createEventIngest itself) and EVENT_SINK_URL.
 */
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import express from 'express'
import Fastify from 'fastify'
import { H3, toNodeHandler } from 'h3'
import Koa from 'koa'
import { createEventIngest, createEventModel, pickExamples, readFixtures, renderCatalog, routes } from '../src/index'
import { eventIngestPlugin } from '../adapters/h3'
import { eventIngest as expressIngest } from '../adapters/express'
import { eventIngest as fastifyIngest } from '../adapters/fastify'
import { eventIngest as koaIngest } from '../adapters/koa'

const env = process.env
const framework = env.FRAMEWORK || 'h3'
const port = Number(env.PORT || 3000)
const host = env.HOST || '127.0.0.1'
const graceMs = Number(env.SHUTDOWN_GRACE_MS || 10_000)
const sinkUrl = env.EVENT_SINK_URL || undefined
const configuredAdmin = firstToken(env.EVENT_ADMIN_TOKEN)
const configuredIngest = firstToken(env.EVENT_INGEST_TOKEN)
// Low enough to meet by clicking "send samples" quickly: the dashboard counts the 429s.
const rateLimits = env.RATE_LIMITS === 'off' ? undefined : { perAddress: { points: 60, durationSeconds: 60 }, perSource: { points: 5000, durationSeconds: 60 } }
// Without EVENT_ADMIN_TOKEN the admin routes would refuse everything: make one up for this run.
const devAdminToken = configuredAdmin ? undefined : `dev-${randomBytes(18).toString('base64url')}`

if (!Number.isInteger(port) || port < 0 || port > 65_535) fail(`PORT must be an integer from 0 to 65535, got ${JSON.stringify(env.PORT)}`)
if (env.RATE_LIMITS !== undefined && env.RATE_LIMITS !== 'on' && env.RATE_LIMITS !== 'off') fail(`RATE_LIMITS must be on or off, got ${JSON.stringify(env.RATE_LIMITS)}`)
if (!Number.isInteger(graceMs) || graceMs < 0) fail(`SHUTDOWN_GRACE_MS must be a whole number of ms, got ${JSON.stringify(env.SHUTDOWN_GRACE_MS)}`)

// EVENT_STORAGE, EVENT_INGEST_TOKEN, EVENT_ADMIN_TOKEN, EVENT_SINK_URL and EVENT_SINK_TOKEN are
// read by createEventIngest itself; only the generated dev admin token is passed (undefined when
// EVENT_ADMIN_TOKEN is set). Forwarding retries quickly here so a sink restart shows up at once.
// A bad setting is one line naming it, as a bad FRAMEWORK or PORT is.
// Background reports wait until start-up is over: a storage that cannot start is then said once,
// as the reason the playground stops, and an unreachable Redis is said before the banner.
let startupReports: unknown[] | undefined = []
const onError = (error: unknown) => (startupReports ? startupReports.push(error) : console.warn(`[event-ingest] ${unprefixed(error)}`))
// PII redaction of the sample events' personal data, before storage and forwarding. Without
// EVENT_REDACTION_SECRET the HMAC key is made up for this run (pseudonyms then change per run).
const model = createEventModel({
  redact: [
    { events: ['OrderCreated'], path: 'customer.email', action: 'hash' },
    { events: ['OrderCreated'], path: 'customer.phone', action: 'mask' },
    { events: ['OrderCreated'], path: 'items[].giftMessage', action: 'drop' },
    { events: ['EmailSent'], path: 'to', action: 'hash' },
  ],
})
const devRedactionSecret = env.EVENT_REDACTION_SECRET ? undefined : randomBytes(32).toString('hex')
let ingest: ReturnType<typeof createEventIngest>
try {
  ingest = createEventIngest({
    model,
    ...(devRedactionSecret ? { redaction: { secret: devRedactionSecret } } : {}),
    adminToken: devAdminToken,
    onError,
    rateLimits,
    ...(sinkUrl ? { sink: { url: sinkUrl, maxBackoffMs: 5000 } } : {}),
  })
} catch (error) {
  fail(unprefixed(error))
}

/** Each host framework with event-ingest mounted, as a node request listener. */
const frameworks: Record<string, () => Promise<RequestListener>> = {
  h3: async () => toNodeHandler(new H3().register(eventIngestPlugin(ingest))),
  express: async () => express().use(expressIngest(ingest)),
  koa: async () => new Koa().use(koaIngest(ingest)).callback(),
  fastify: async () => {
    let handler: RequestListener | undefined
    // serverFactory hands over Fastify's request handler; the server it returns is never listened on.
    const app = Fastify({ serverFactory: (h) => ((handler = h), createServer()) })
    await app.register(fastifyIngest, { ingest })
    await app.ready()
    return handler!
  },
}

const mount = frameworks[framework]
if (!mount) fail(`FRAMEWORK must be one of ${Object.keys(frameworks).join(', ')}, got ${JSON.stringify(framework)}`)

try {
  await ingest.ready()
} catch (error) {
  fail(`storage ${JSON.stringify(redact(env.EVENT_STORAGE ?? 'memory:'))} failed: ${unprefixed(error)}`)
}
const reported = startupReports
startupReports = undefined
for (const error of reported) onError(error)
const app = await mount()

// ── The local sink: POST /sink keeps the last 20 batches with their headers, GET /sink lists them.
interface SinkBatch {
  receivedAt: string
  headers: Record<string, string>
  events: number | null
  body: unknown
}
const sinkBatches: SinkBatch[] = []
const SINK_KEEP = 20
const SINK_MAX_BYTES = 1024 * 1024

/**
 * How the local sink answers, to exercise forwarding: `ok` takes batches, `fail` refuses them for
 * good (422: they become dead letters), `down` answers 503 (the outbox keeps them and retries).
 */
type SinkMode = 'ok' | 'fail' | 'down'
const sinkModes: readonly SinkMode[] = ['ok', 'fail', 'down']
let sinkMode: SinkMode = 'ok'

/** `GET /sink/mode` → `{mode}`; `POST /sink/mode` with `{"mode": "ok" | "fail" | "down"}` sets it. */
async function sinkModeRoute(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method === 'GET') return sendJson(res, 200, { mode: sinkMode })
  if (req.method !== 'POST') return sendJson(res, 405, { code: 'method_not_allowed', message: 'use GET or POST on /sink/mode' })
  let text = ''
  for await (const chunk of req as AsyncIterable<Buffer>) {
    text += chunk.toString('utf8')
    if (text.length > 1024) return sendJson(res, 413, { code: 'body_too_large', message: 'mode: the body is a small JSON object' })
  }
  let mode: unknown
  try {
    mode = (JSON.parse(text) as { mode?: unknown } | null)?.mode
  } catch (error) {
    return sendJson(res, 400, { code: 'invalid_json', message: `body is not valid JSON: ${(error as Error).message}` })
  }
  if (!sinkModes.includes(mode as SinkMode)) return sendJson(res, 400, { code: 'invalid_request', message: `mode: expected one of ${sinkModes.join(', ')}` })
  sinkMode = mode as SinkMode
  sendJson(res, 200, { mode: sinkMode })
}

async function sink(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method === 'GET') return sendJson(res, 200, { batches: sinkBatches })
  if (req.method !== 'POST') return sendJson(res, 405, { code: 'method_not_allowed', message: 'use GET or POST on /sink' })
  if (sinkMode === 'fail') return sendJson(res, 422, { code: 'refused', message: 'the playground sink is in fail mode (POST /sink/mode {"mode":"ok"} to take batches again)' })
  if (sinkMode === 'down') return sendJson(res, 503, { code: 'unavailable', message: 'the playground sink is in down mode' })
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > SINK_MAX_BYTES) return sendJson(res, 413, { code: 'body_too_large', message: `the sink keeps bodies up to ${SINK_MAX_BYTES} bytes` })
    chunks.push(chunk)
  }
  let body: unknown
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch (error) {
    return sendJson(res, 400, { code: 'invalid_json', message: `body is not valid JSON: ${(error as Error).message}` })
  }
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue
    const text = Array.isArray(value) ? value.join(', ') : value
    headers[name] = name === 'authorization' || name.includes('token') ? mask(text) : text
  }
  const events = Array.isArray(body) ? body.length : Array.isArray((body as { events?: unknown } | null)?.events) ? (body as { events: unknown[] }).events.length : null
  sinkBatches.unshift({ receivedAt: new Date().toISOString(), headers, events, body })
  sinkBatches.length = Math.min(sinkBatches.length, SINK_KEEP)
  sendJson(res, 200, { ok: true, received: events })
}

// ── The dashboard. DEV ONLY: the page gets the admin token (and the ingest token when one is set)
// injected, so anyone who can load `/` can read them. That is why the playground listens on
// 127.0.0.1 by default; never expose it, and never point it at production tokens or data.
async function dashboard(res: ServerResponse): Promise<void> {
  const config = {
    framework,
    storage: redact(env.EVENT_STORAGE || 'memory:'),
    adminToken: configuredAdmin ?? devAdminToken,
    ingestToken: configuredIngest ?? null,
    sinkUrl: sinkUrl ? redact(sinkUrl) : null,
    sinkHint: `EVENT_SINK_URL=${baseUrl()}/sink`,
  }
  const html = await readFile(new URL('./dashboard.html', import.meta.url), 'utf8')
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    // Inline but for the client module, served from here.
    'content-security-policy': "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
  })
  res.end(html.replace('__PLAYGROUND_CONFIG__', () => JSON.stringify(config).replace(/</g, '\\u003c')))
}

// ── The event catalog: what `event-ingest docs --fixtures test/fixtures/v1` writes for the model
// mounted here (the canonical one), as Markdown, with the golden fixtures as examples.
async function catalog(res: ServerResponse): Promise<void> {
  const fixtures = await readFixtures(fileURLToPath(new URL('../test/fixtures/v1/', import.meta.url)))
  const text = renderCatalog(ingest.schema(), { examples: pickExamples(fixtures, ingest.model) })
  res.writeHead(200, { 'content-type': 'text/markdown; charset=utf-8', 'cache-control': 'no-store' })
  res.end(text)
}

// ── event-ingest/client for the dashboard page: the client's source bundled for the browser once,
// on first request (esbuild, a development dependency: the playground runs from the checkout).
let clientModule: Promise<string> | undefined
async function clientScript(res: ServerResponse): Promise<void> {
  clientModule ??= import('esbuild').then(async ({ build }) => {
    const out = await build({ entryPoints: [fileURLToPath(new URL('../src/client/index.ts', import.meta.url))], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, minify: true })
    return out.outputFiles[0]!.text
  })
  const text = await clientModule
  res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' })
  res.end(text)
}

/** The playground's own routes sit in front of the framework, so each branch above only mounts event-ingest. */
const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0]
  const get = req.method === 'GET' || req.method === 'HEAD'
  const own = path === '/' ? dashboard(res) : path === '/sink' ? sink(req, res) : path === '/sink/mode' ? sinkModeRoute(req, res) : path === '/catalog' && get ? catalog(res) : path === '/playground/client.mjs' && get ? clientScript(res) : undefined
  if (!own) return app(req, res)
  own.catch((error: unknown) => {
    console.error(error)
    if (!res.headersSent) sendJson(res, 500, { code: 'internal', message: String(error) })
    else res.destroy()
  })
})

server.on('error', (error) => fail(`cannot listen on ${host}:${port}: ${error.message}`))
server.listen(port, host, () => printBanner())

// Graceful stop: no new connections, idle ones closed, requests in flight answered (their batches
// are stored and they hear so), then the core closes. Connections still busy after the grace
// period are cut. A second signal a moment later (Ctrl-C again) stops at once; one delivered
// twice (to the process group and relayed by npm or tsx) is the same request to stop.
let stoppingAt: number | undefined
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stoppingAt !== undefined) {
      if (Date.now() - stoppingAt > 1000) process.exit(1)
      return
    }
    stoppingAt = Date.now()
    console.log(`[playground] ${signal}: finishing requests in flight (up to ${graceMs} ms), then stopping`)
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    // A keep-alive connection becomes idle once its answer is sent: close it then.
    const idle = setInterval(() => server.closeIdleConnections(), 50)
    server.closeIdleConnections()
    const grace = setTimeout(() => server.closeAllConnections(), graceMs)
    void closed
      .then(() => ingest.close())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          console.error(`[playground] stopping failed: ${unprefixed(error)}`)
          process.exit(1)
        },
      )
      .finally(() => {
        clearInterval(idle)
        clearTimeout(grace)
      })
  })
}

function baseUrl(): string {
  const address = server.address() as AddressInfo | null
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host
  return `http://${shown}:${address?.port ?? port}`
}

function printBanner(): void {
  const url = baseUrl()
  const admin = devAdminToken ?? `${mask(configuredAdmin!)} (from EVENT_ADMIN_TOKEN)`
  const lines = [
    `event-ingest playground (${framework}) listening on ${url}`,
    '',
    `  dashboard     ${url}/`,
    `  storage       ${env.EVENT_STORAGE ? redact(env.EVENT_STORAGE) : 'memory: (embedded default; try EVENT_STORAGE=fs:playground/.data or redis://127.0.0.1:6379/0)'}`,
    `  ingest token  ${configuredIngest ? `${mask(configuredIngest)} (from EVENT_INGEST_TOKEN), sent as x-event-token` : 'none: ingest is open (set EVENT_INGEST_TOKEN to require x-event-token)'}`,
    `  admin token   ${admin}${devAdminToken ? '  (generated for this run; set EVENT_ADMIN_TOKEN to choose one)' : ''}`,
    `  redaction     ${ingest.schema().events.flatMap((e) => (e.redact ?? []).map((r) => `${e.name} ${r.path} (${r.action})`)).join(', ')}; HMAC key ${devRedactionSecret ? 'generated for this run (set EVENT_REDACTION_SECRET to keep pseudonyms across runs)' : 'from EVENT_REDACTION_SECRET'}`,
    `  rate limits   ${rateLimits ? `${rateLimits.perAddress.points} ingest requests a minute per address, ${rateLimits.perSource.points} events a minute per source (RATE_LIMITS=off turns them off)` : 'off (RATE_LIMITS=off)'}`,
    sinkUrl
      ? `  sink          forwarding to ${redact(sinkUrl)} (at least once, through the outbox)`
      : `  sink          off. Hint: EVENT_SINK_URL=${url}/sink shows forwarding end to end (batches appear in the dashboard's Sink panel)`,
    '',
    'routes',
    `  POST ${url}${routes.ingest}         JSON array of events${configuredIngest ? ', header x-event-token' : ''}`,
    `  GET  ${url}${routes.schema}`,
    `  GET  ${url}${routes.stats}    header Authorization: Bearer <admin token>`,
    `  GET  ${url}${routes.events}?limit=20  same; filters name, source, since, until, cursor`,
    `  POST ${url}/sink  GET ${url}/sink  the playground's local sink`,
    `  POST ${url}/sink/mode  {"mode":"ok"|"fail"|"down"}  make the local sink take, refuse (dead letters) or fail (retries)`,
    `  GET  ${url}/catalog  the event catalog (Markdown), as event-ingest docs writes it`,
    '',
    'try',
    `  curl -s ${url}${routes.ingest} -H 'content-type: application/json'${configuredIngest ? " -H 'x-event-token: <ingest token>'" : ''} -d '${JSON.stringify([sampleEvent()])}'`,
    `  curl -s ${url}${routes.stats} -H 'authorization: Bearer ${devAdminToken ?? '<admin token>'}'`,
    '',
  ]
  console.log(lines.join('\n'))
}

/** An event to paste: sending it twice shows deduplication. */
function sampleEvent() {
  return { id: `evt_${Date.now().toString(36)}`, name: 'ProductViewed', schemaVersion: 1, occurredAt: new Date().toISOString(), source: 'storefront', payload: { productId: 'prod_1' } }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body))
}

function firstToken(value: string | undefined): string | undefined {
  return value?.split(',').map((t) => t.trim()).find(Boolean)
}

/** Shows the start of a secret only. */
function mask(secret: string): string {
  return secret.length <= 8 ? '****' : `${secret.slice(0, 4)}…(${secret.length} chars)`
}

/** Hides a password in a URL like redis://:secret@host. */
function redact(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@/i, (_, scheme: string, auth: string) => `${scheme}${auth.includes(':') ? `${auth.split(':')[0]}:****` : '****'}@`)
}

/** An error's message without the library's own prefix (the playground adds its own). */
function unprefixed(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/^\[event-ingest\] /, '')
}

function fail(message: string): never {
  console.error(`[playground] ${message}`)
  process.exit(1)
}
