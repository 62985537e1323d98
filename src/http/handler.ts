import { readBearer, createTokenCheck } from './auth'
import { checkContentType, type BodyFormat } from './body'
import { IngestError, limitError } from '../base/errors'
import { eventSources } from '../model/definitions'
import { contentCodingDeclared, readRequestBody } from './encoding'
import { describeValue, parseBatchBytes, parseBatchText, parseJsonBytes } from '../model/json'
import { createKeyCheck, tokenNotAllowed, type PublishableKey } from './keys'
import { cloudEventBatchOf, parseCloudEventBytes, parseCloudEventText } from '../model/cloudevents'
import type { EventQuery } from '../log/event-log'
import type { RequestLimits } from './rate-limits'
import type { CorsOptions, HandledCore, IngestHttpRequest, IngestHttpResponse, IngestResult } from './types'

/** Options of the HTTP contract. */
export interface HttpOptions {
  /** Valid ingest tokens (rotation: several at once). Empty: ingest is open. */
  tokens: readonly string[]
  /** Valid admin bearer tokens. */
  adminTokens: readonly string[]
  /** Keys a browser may hold (`?key=` or the body), each limited to its sources and origins. */
  publishableKeys?: readonly PublishableKey[]
  /** A host hook deciding admin access; when given, a request without a valid admin token is asked here. */
  authorize?: (request: IngestHttpRequest) => boolean | Promise<boolean>
  /** Seconds sent in Retry-After with 503. */
  retryAfterSeconds: number
  /** Cross-origin access for browser producers; off when undefined. */
  cors?: CorsOptions
  /** Told of every ingest request refused as a whole (400, 401, 413, 415, 429), for stats. */
  onRefused?: (code: string) => void
  /** The ingest route's rate limits; none when undefined. */
  rateLimits?: RequestLimits
}

/** The routes of the contract, relative to the mount point. */
export const routes = {
  ingest: '/events/ingest',
  schema: '/events/schema',
  stats: '/admin/events/stats',
  events: '/admin/events',
  deadLetters: '/admin/events/dead-letters',
  requeue: '/admin/events/requeue',
  metrics: '/admin/metrics',
  replays: '/admin/events/replays',
  cancelReplay: '/admin/events/replays/cancel',
} as const

const allowed: Record<string, string> = {
  [routes.ingest]: 'POST, OPTIONS',
  [routes.schema]: 'GET, HEAD, OPTIONS',
  [routes.stats]: 'GET, HEAD',
  [routes.events]: 'GET, HEAD',
  [routes.deadLetters]: 'GET, HEAD',
  [routes.requeue]: 'POST',
  [routes.metrics]: 'GET, HEAD',
  [routes.replays]: 'GET, HEAD, POST',
  [routes.cancelReplay]: 'POST',
}

/** Seconds a browser may cache a preflight answer when `cors.maxAge` is unset. */
export const DEFAULT_CORS_MAX_AGE = 600

function corsHeaders(cors: CorsOptions | undefined, origin: string | undefined): Record<string, string> | undefined {
  if (!cors || !origin) return undefined
  const allowedOrigin = cors.origin === '*' ? true : typeof cors.origin === 'function' ? cors.origin(origin) : cors.origin.includes(origin)
  if (!allowedOrigin) return undefined
  return { 'access-control-allow-origin': cors.origin === '*' ? '*' : origin, vary: 'origin', 'access-control-expose-headers': 'retry-after' }
}

/** CORS headers for a request made with a publishable key, from an origin the key was issued for. */
function keyCorsHeaders(key: PublishableKey | undefined, origin: string | undefined): Record<string, string> | undefined {
  if (!key || !origin || !(key.origins.includes('*') || key.origins.includes(origin))) return undefined
  return { 'access-control-allow-origin': origin, vary: 'origin', 'access-control-expose-headers': 'retry-after' }
}

function queryParams(query: IngestHttpRequest['query']): URLSearchParams {
  return query instanceof URLSearchParams ? query : new URLSearchParams(query ?? '')
}

/**
 * What a request to ingest carries: a valid secret token (`'token'`), a publishable key from the
 * query string, or nothing yet (`'body'`: a publishable key may be in the body).
 */
type Credential = 'token' | 'body' | PublishableKey

/** The body of a publishable key: `{ "key": "pk_…", "events": [...] }`. */
interface KeyedBody {
  key: string
  events: unknown
}

function asKeyedBody(value: unknown): KeyedBody | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, 'key')) return undefined
  if (typeof (value as { key: unknown }).key !== 'string') throw new IngestError('invalid_request', 'key: expected the publishable key as a string')
  for (const field of Object.keys(value)) {
    if (field !== 'key' && field !== 'events') throw new IngestError('invalid_request', `${field}: a body with a publishable key holds "key" and "events" only`)
  }
  return value as KeyedBody
}

/**
 * When the producer sent the batch: the `x-event-sent-at` header, else the `sentAt` query parameter
 * (a beacon cannot set headers).
 */
function sentAtOf(request: IngestHttpRequest): string | undefined {
  const sent = header(request.headers, 'x-event-sent-at')
  if (sent !== undefined) return sent
  if (request.query === undefined || request.query === '') return undefined
  const params = request.query instanceof URLSearchParams ? request.query : new URLSearchParams(request.query)
  return params.get('sentAt') ?? undefined
}

function header(headers: IngestHttpRequest['headers'], name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined
  const record = headers as Record<string, string | string[] | undefined>
  let value = record[name]
  if (value === undefined) {
    // Node lowercases names; a hand-built request may not.
    for (const key of Object.keys(record)) {
      if (key.toLowerCase() === name) {
        value = record[key]
        break
      }
    }
  }
  return Array.isArray(value) ? value.join(', ') : value
}

const jsonHeaders = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }

function json(status: number, body: unknown, extra?: Record<string, string>): IngestHttpResponse {
  return { status, headers: extra ? { ...jsonHeaders, ...extra } : jsonHeaders, body: JSON.stringify(body) }
}

/** Errors answered before the request's body was read to its end (when event-ingest reads it). */
const unreadBody: ReadonlySet<string> = new Set(['token_missing', 'token_invalid', 'token_not_allowed', 'key_invalid', 'origin_forbidden', 'unsupported_media_type', 'unsupported_encoding', 'body_too_large', 'request_aborted'])

/**
 * A body a host parser read (`parsed`), or tried to (`refused`): not event-ingest's to leave
 * unread. The adapter closes the connection only if the request's stream did not reach its end.
 */
function readByHost(body: IngestHttpRequest['body']): boolean {
  return body !== undefined && ('parsed' in body || 'refused' in body)
}

function errorResponse(error: IngestError, retryAfterSeconds: number, bodyLeftUnread: boolean): IngestHttpResponse {
  const extra: Record<string, string> = {}
  if (error.status === 503) extra['retry-after'] = String(retryAfterSeconds)
  if (error.code === 'rate_limited') extra['retry-after'] = String(error.details?.retryAfterSeconds)
  // Refused before its body was read: the rest is not read, and the connection closes. The
  // per-source limit is the one rate limit checked after the body is read.
  const beforeBody = unreadBody.has(error.code) || (error.code === 'rate_limited' && error.details?.limit !== 'perSource')
  if (bodyLeftUnread && beforeBody) extra.connection = 'close'
  if (error.code === 'admin_token_missing' || error.code === 'admin_token_invalid') extra['www-authenticate'] = 'Bearer realm="event-ingest admin"'
  return json(error.status, error.toJSON(), extra)
}

function parseTime(params: URLSearchParams, name: string): number | undefined {
  const raw = params.get(name)
  if (raw === null || raw === '') return undefined
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw)
  if (!Number.isFinite(ms)) throw new IngestError('invalid_query', `${name}: expected an ISO 8601 timestamp or epoch milliseconds, got ${JSON.stringify(raw)}`)
  return ms
}

function parseQuery(query: IngestHttpRequest['query'], names: readonly string[]): EventQuery {
  const params = query instanceof URLSearchParams ? query : new URLSearchParams(query ?? '')
  const result: EventQuery = {}
  for (const name of ['name', 'source'] as const) {
    const value = params.get(name)
    if (value === null || value === '') continue
    if (name === 'name' && !names.includes(value)) {
      throw new IngestError('invalid_query', `name: unknown event name ${JSON.stringify(value)}`)
    }
    if (name === 'source' && !(eventSources as readonly string[]).includes(value)) {
      throw new IngestError('invalid_query', `source: expected one of ${eventSources.join(', ')}, got ${JSON.stringify(value)}`)
    }
    result[name] = value
  }
  result.since = parseTime(params, 'since')
  result.until = parseTime(params, 'until')
  const limit = params.get('limit')
  if (limit !== null && limit !== '') {
    const n = Number(limit)
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new IngestError('invalid_query', `limit: expected an integer from 1 to 1000, got ${JSON.stringify(limit)}`)
    result.limit = n
  }
  const cursor = params.get('cursor')
  if (cursor) result.cursor = cursor
  return result
}

/**
 * Builds the neutral request handler: routes, auth, limits, status codes and JSON bodies, for any
 * adapter. Resolves `undefined` for paths that are not ours, so the host's routing continues.
 */
export function createHttpHandler(core: HandledCore, options: HttpOptions) {
  const tokenCheck = createTokenCheck(options.tokens)
  const adminCheck = createTokenCheck(options.adminTokens)
  const keys = options.publishableKeys ?? []
  const keyCheck = createKeyCheck(keys, options.tokens)
  // With publishable keys, ingest needs a token or a key even when no secret token is set.
  const open = options.tokens.length === 0 && keys.length === 0
  /** The publishable key each request was accepted with, for its CORS headers (errors included). */
  const requestKeys = new WeakMap<IngestHttpRequest, PublishableKey>()
  const { maxBodyBytes, maxDepth, maxEventBytes, maxInflateRatio } = core.model.limits
  const decodeLimits = { maxBodyBytes, maxInflateRatio }

  async function admin(request: IngestHttpRequest): Promise<void> {
    const presented = readBearer(header(request.headers, 'authorization'))
    if (presented !== undefined && options.adminTokens.length > 0 && adminCheck(presented)) return
    if (options.authorize) {
      if (await options.authorize(request)) return
      throw new IngestError('admin_forbidden', 'admin access denied by the host authorize hook')
    }
    if (options.adminTokens.length === 0) {
      throw new IngestError('admin_disabled', 'admin routes are disabled: configure an admin token (EVENT_ADMIN_TOKEN or the adminToken option) or an authorize hook')
    }
    if (presented === undefined) throw new IngestError('admin_token_missing', 'authorization: send the admin token as "Authorization: Bearer <token>"')
    throw new IngestError('admin_token_invalid', 'authorization: the admin token is not valid')
  }

  /**
   * Checks the credential of an ingest request before its body is read: the `x-event-token`
   * header (a secret token), or a publishable key as `?key=` (checked with the request's `Origin`).
   * A secret token is never read from the query string. Without either, and with publishable keys
   * configured, the body may hold a key (`'body'`).
   */
  function credentialOf(request: IngestHttpRequest): Credential {
    const query = request.query
    const params = query === undefined || query === '' ? undefined : queryParams(query)
    for (const name of ['token', 'x-event-token']) {
      if (params?.has(name)) throw tokenNotAllowed(`${name} (query string)`)
    }
    const token = header(request.headers, 'x-event-token')
    const presentedKey = params?.get('key') ?? null
    if (presentedKey !== null) {
      if (token !== undefined && token !== '') throw new IngestError('invalid_request', 'key: send either x-event-token or a publishable key, not both')
      return acceptKey(request, keyCheck.lookup(presentedKey, 'key (query string)'))
    }
    if (token === undefined || token === '') {
      if (keys.length > 0) return 'body'
      throw new IngestError('token_missing', 'x-event-token: this endpoint needs a token in the x-event-token header')
    }
    if (!tokenCheck(token)) throw new IngestError('token_invalid', 'x-event-token: the token is not valid')
    return 'token'
  }

  function acceptKey(request: IngestHttpRequest, key: PublishableKey): PublishableKey {
    keyCheck.checkOrigin(key, header(request.headers, 'origin'))
    requestKeys.set(request, key)
    return key
  }

  /**
   * The events of a body and the key they came with. With no credential before the body
   * (`'body'`), the body must be `{ "key": "pk_…", "events": [...] }` with a valid key.
   */
  function keyedEvents(request: IngestHttpRequest, value: unknown, credential: Credential): { events: unknown; key: PublishableKey | undefined } {
    if (credential !== 'body') return { events: value, key: credential === 'token' ? undefined : credential }
    const body = asKeyedBody(value)
    if (body === undefined) throw new IngestError('token_missing', 'x-event-token: this endpoint needs a token in the x-event-token header, or a publishable key as ?key= or in the body ({"key": "pk_…", "events": [...]})')
    const key = acceptKey(request, keyCheck.lookup(body.key, 'key (body)'))
    if (!Array.isArray(body.events)) throw new IngestError('not_an_array', `events: must be a JSON array of events, got ${body.events === undefined ? 'nothing' : describeValue(body.events)}`)
    return { events: body.events, key }
  }

  /**
   * A body a host parser already read. Its Content-Encoding is not applied again: the parser
   * decoded it (body-parser and @koa/bodyparser inflate gzip, deflate and br), so the body is
   * measured as the parser left it when the Content-Length says nothing of its decoded size.
   */
  async function ingestParsed(request: IngestHttpRequest, value: unknown, declared: number | undefined, credential: Credential, format: BodyFormat): Promise<IngestResult> {
    if (declared !== undefined && declared > maxBodyBytes) {
      throw limitError('body_too_large', 'maxBodyBytes', maxBodyBytes, `a body of ${declared} bytes`)
    }
    // express.json() and @koa/bodyparser leave `{}` for a request without a body.
    if (isEmptyParse(value) && (declared === 0 || (declared === undefined && header(request.headers, 'transfer-encoding') === undefined))) {
      throw new IngestError('invalid_json', 'body is empty; send a JSON array of events')
    }
    if (typeof value === 'string' || value instanceof Uint8Array) {
      // A host parser that kept text (express.text()) or bytes (express.raw()): parsed here, with the scan.
      const size = typeof value === 'string' ? Buffer.byteLength(value) : value.length
      if (size > maxBodyBytes) throw limitError('body_too_large', 'maxBodyBytes', maxBodyBytes, `a body of ${size} bytes`)
      if (credential === 'body') return ingestKeyed(request, typeof value === 'string' ? parseJsonBytes(Buffer.from(value, 'utf8')) : parseJsonBytes(value), credential, format)
      const parsed = format === 'cloudevent'
        ? typeof value === 'string' ? parseCloudEventText(value, maxDepth, maxEventBytes) : parseCloudEventBytes(value, maxDepth, maxEventBytes)
        : typeof value === 'string' ? parseBatchText(value, maxDepth, maxEventBytes) : parseBatchBytes(value, maxDepth, maxEventBytes)
      return ingestBatch(parsed.value, { hints: parsed, sentAt: sentAtOf(request), key: credential === 'token' ? undefined : credential, format: formatOf(format) })
    }
    const encoded = contentCodingDeclared(header(request.headers, 'content-encoding'))
    if ((declared === undefined || encoded) && value !== undefined) {
      const size = Buffer.byteLength(JSON.stringify(value) ?? '')
      if (size > maxBodyBytes) throw limitError('body_too_large', 'maxBodyBytes', maxBodyBytes, `a body of ${size} bytes`)
    }
    return ingestKeyed(request, value, credential, format)
  }

  /** A batch with no parse of ours to carry (a host's, or a publishable key's body): validated from the value. */
  async function ingestKeyed(request: IngestHttpRequest, value: unknown, credential: Credential, format: BodyFormat): Promise<IngestResult> {
    const { events, key } = keyedEvents(request, value, credential)
    if (credential === 'body' && key && options.rateLimits) await options.rateLimits.key(key.id)
    return ingestBatch(format === 'cloudevent' ? cloudEventBatchOf(events) : events, { sentAt: sentAtOf(request), key, format: formatOf(format) })
  }

  /** A parsed batch to the core, once within the per-source rate limit. */
  function ingestBatch(value: unknown, context: Parameters<HandledCore['ingest']>[1]): Promise<IngestResult> {
    const limits = options.rateLimits
    return limits ? limits.sources(value).then(() => core.ingest(value, context)) : core.ingest(value, context)
  }

  /**
   * An ingest: its result, or its refusal as the answer (counted by `onRefused` when it is the
   * client's), so that the hot path has no router layer around it.
   */
  async function ingestRoute(request: IngestHttpRequest): Promise<IngestHttpResponse> {
    try {
      const limits = options.rateLimits
      // Every request of an address counts, those with a wrong token too.
      if (limits) await limits.address(request.remoteAddress, header(request.headers, 'x-forwarded-for'))
      const credential: Credential = open ? 'token' : credentialOf(request)
      // A valid secret token, or an accepted publishable key: its own limit (a key in the body is
      // counted once the body is read).
      if (limits && !open && credential === 'token') await limits.token(header(request.headers, 'x-event-token')!)
      else if (limits && typeof credential === 'object') await limits.key(credential.id)
      const format = checkContentType(header(request.headers, 'content-type'))
      const lengthHeader = header(request.headers, 'content-length')
      const declared = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined
      const body = request.body
      let result: IngestResult
      if (body === undefined) {
        throw new IngestError('invalid_json', 'body is empty; send a JSON array of events')
      } else if ('refused' in body) {
        // A host parser's refusal, answered (and counted) as the core's own, after the token check.
        throw body.refused
      } else if ('parsed' in body) {
        result = await ingestParsed(request, body.parsed, declared, credential, format)
      } else {
        const read = readRequestBody(body, header(request.headers, 'content-encoding'), decodeLimits, declared)
        const bytes = await read.bytes
        const owned = read.owned
        if (bytes.length === 0) throw new IngestError('invalid_json', 'body is empty; send a JSON array of events')
        if (credential === 'body') {
          result = await ingestKeyed(request, parseJsonBytes(bytes), credential, format)
        } else {
          const received = format === 'cloudevent' ? parseCloudEventBytes(bytes, maxDepth, maxEventBytes) : parseBatchBytes(bytes, maxDepth, maxEventBytes, owned)
          result = await ingestBatch(received.value, { hints: received, sentAt: sentAtOf(request), key: credential === 'token' ? undefined : credential, format: formatOf(format) })
        }
      }
      // The usual answer (nothing rejected) written out: the same text as JSON.stringify, for less
      // (the conformance suite checks that it carries every field of the core's result).
      if (result.rejected.length > 0) return json(200, result)
      return { status: 200, headers: jsonHeaders, body: `{"accepted":${result.accepted},"duplicates":${result.duplicates},"rejected":[]}` }
    } catch (error) {
      if (!(error instanceof IngestError)) throw error
      if (error.status < 500) options.onRefused?.(error.code)
      return errorResponse(error, options.retryAfterSeconds, !readByHost(request.body))
    }
  }

  async function handle(request: IngestHttpRequest): Promise<IngestHttpResponse | undefined> {
    const path = request.path
    const allow = Object.hasOwn(allowed, path) ? allowed[path] : undefined
    if (allow === undefined) return undefined
    const method = request.method.toUpperCase()
    // An ingest, the hot path, is answered without the router's layer around it.
    const response = method === 'POST' && path === routes.ingest ? await ingestRoute(request) : await route(request, path, method, allow)
    if (path === routes.ingest || path === routes.schema) {
      const origin = header(request.headers, 'origin')
      const cors = corsHeaders(options.cors, origin) ?? keyCorsHeaders(requestKeys.get(request), origin)
      if (cors) response.headers = { ...response.headers, ...cors }
    }
    return response
  }

  /**
   * A preflight of a request with a publishable key: `?key=` is in the URL the browser asks
   * about. A valid key whose origins include the request's makes it an allowed origin; nothing
   * is refused here (the request itself is).
   */
  function preflightKey(request: IngestHttpRequest): boolean {
    const presented = keys.length > 0 ? queryParams(request.query).get('key') : null
    if (presented === null) return false
    try {
      const key = keyCheck.lookup(presented, 'key')
      if (!keyCorsHeaders(key, header(request.headers, 'origin'))) return false
      requestKeys.set(request, key)
      return true
    } catch {
      return false
    }
  }

  async function route(request: IngestHttpRequest, path: string, method: string, allow: string): Promise<IngestHttpResponse> {
    if (method === 'OPTIONS') {
      const headers: Record<string, string> = { allow }
      if (path === routes.ingest && (corsHeaders(options.cors, header(request.headers, 'origin')) || preflightKey(request))) {
        headers['access-control-allow-methods'] = 'POST, OPTIONS'
        headers['access-control-allow-headers'] = 'content-type, x-event-token, x-event-sent-at'
        headers['access-control-max-age'] = String(options.cors?.maxAge ?? DEFAULT_CORS_MAX_AGE)
      }
      return { status: 204, headers, body: '' }
    }
    try {
      switch (path) {
        case routes.ingest:
          // A POST is answered by ingestRoute, before the router (see handle): any other method is 405.
          break
        case routes.schema:
          if (method !== 'GET' && method !== 'HEAD') break
          return json(200, core.schema())
        case routes.stats:
          if (method !== 'GET' && method !== 'HEAD') break
          await admin(request)
          return json(200, await storageRead(() => core.stats()))
        case routes.events:
          if (method !== 'GET' && method !== 'HEAD') break
          await admin(request)
          return json(200, await storageRead(() => core.events(parseQuery(request.query, core.model.names))))
        case routes.deadLetters:
          if (method !== 'GET' && method !== 'HEAD') break
          await admin(request)
          return json(200, { deadLetters: await storageRead(() => core.deadLetters()) })
        case routes.metrics: {
          if (method !== 'GET' && method !== 'HEAD') break
          await admin(request)
          const { contentType, text } = await core.metricsText()
          return { status: 200, headers: { 'content-type': contentType, 'cache-control': 'no-store' }, body: text }
        }
        case routes.requeue: {
          if (method !== 'POST') break
          await admin(request)
          const ids = await readRequeueIds(request)
          return json(200, { requeued: await storageRead(() => core.requeue(ids)) })
        }
        case routes.replays: {
          if (method === 'GET' || method === 'HEAD') {
            await admin(request)
            return json(200, { replays: await storageRead(() => core.replays()) })
          }
          if (method !== 'POST') break
          await admin(request)
          const filter = await readAdminBody(request)
          return json(202, { replay: await storageRead(() => core.replay(filter ?? {})) })
        }
        case routes.cancelReplay: {
          if (method !== 'POST') break
          await admin(request)
          const value = await readAdminBody(request)
          const id = value && typeof value === 'object' && !Array.isArray(value) ? (value as { id?: unknown }).id : undefined
          if (typeof id !== 'string' || id === '') throw new IngestError('invalid_request', 'id: expected the replay id (a string), as GET /admin/events/replays lists them', { field: 'id' })
          return json(200, { replay: await core.cancelReplay(id) })
        }
      }
      return json(405, { code: 'method_not_allowed', message: `${method} is not allowed on ${path}; use ${allow}` }, { allow })
    } catch (error) {
      if (error instanceof IngestError) return errorResponse(error, options.retryAfterSeconds, !readByHost(request.body))
      throw error
    }
  }

  /**
   * The ids of `POST /admin/events/requeue`: `{ "ids": [...] }`, or every dead letter for an empty
   * body or one without `ids`. Read after the admin check, within the body limit.
   */
  async function readRequeueIds(request: IngestHttpRequest): Promise<string[] | undefined> {
    const value = await readAdminBody(request)
    // A host parser leaves `{}` (or nothing) for an empty body.
    if (value === undefined || value === null) return undefined
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new IngestError('invalid_request', `body must be a JSON object like {"ids": ["..."]}, got ${Array.isArray(value) ? 'an array' : typeof value}`)
    }
    const ids = (value as { ids?: unknown }).ids
    if (ids === undefined) return undefined
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) {
      throw new IngestError('invalid_request', 'ids: expected an array of dead-letter ids (strings), as GET /admin/events/dead-letters lists them')
    }
    return ids
  }

  /** The JSON body of an admin route (undefined when empty), read after the admin check within the body limit. */
  async function readAdminBody(request: IngestHttpRequest): Promise<unknown> {
    const body = request.body
    let value: unknown
    if (body === undefined) return undefined
    if ('refused' in body) throw body.refused
    if ('parsed' in body) {
      value = body.parsed
      if (typeof value === 'string' || value instanceof Uint8Array) value = parseAdminText(Buffer.from(value).toString('utf8'))
    } else {
      const lengthHeader = header(request.headers, 'content-length')
      const declared = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined
      // Decoded as an ingest body is, within the same limits.
      const bytes = await readRequestBody(body, header(request.headers, 'content-encoding'), decodeLimits, declared).bytes
      if (bytes.length > 0) checkContentType(header(request.headers, 'content-type'))
      value = parseAdminText(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'))
    }
    return value
  }

  return { handle, owns: (path: string) => Object.hasOwn(allowed, path) }
}

function parseAdminText(text: string): unknown {
  if (text.trim() === '') return undefined
  try {
    return JSON.parse(text)
  } catch (error) {
    throw new IngestError('invalid_json', `body is not valid JSON: ${(error as Error).message}`)
  }
}

/** Admin reads answer 503 in the contract's format when storage fails, never an unknown 500. */
async function storageRead<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read()
  } catch (error) {
    if (error instanceof IngestError) throw error
    throw new IngestError('storage_unavailable', `storage is unavailable: ${(error as Error).message}`, undefined, { cause: error })
  }
}

/** The core's name of a body's event format. */
function formatOf(format: BodyFormat): 'envelope' | 'cloudevents' {
  return format === 'envelopes' ? 'envelope' : 'cloudevents'
}

/** What host parsers leave for a request without a body: nothing, `''`, no bytes, or `{}`. */
function isEmptyParse(value: unknown): boolean {
  if (value === undefined || value === '') return true
  if (value instanceof Uint8Array) return value.length === 0
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  for (const _ in value) return false
  return Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null
}
