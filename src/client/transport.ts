/** What one attempt to send a batch came back with. */
export type SendOutcome =
  | { kind: 'ok'; status: number; body: IngestAnswer }
  | { kind: 'http'; status: number; retryAfter: string | null; body: Record<string, unknown> | undefined }
  | { kind: 'network'; error: unknown }

/** The 200 answer of `POST /events/ingest`. */
export interface IngestAnswer {
  accepted: number
  duplicates: number
  rejected: { index: number; id?: string; errors: { path: string; message: string }[] }[]
}

/** Where and how a client sends. */
export interface Transport {
  ingestUrl: string
  token: string | undefined
  key: string | undefined
  threshold: number | false
  fetch: typeof fetch
}

/** The ingest URL with its query: `key` (publishable) and, for beacons, `sentAt`. */
export function ingestTarget(transport: Transport, sentAt?: string): string {
  const url = new URL(transport.ingestUrl)
  if (transport.key) url.searchParams.set('key', transport.key)
  if (sentAt) url.searchParams.set('sentAt', sentAt)
  return url.href
}

/** gzip through `CompressionStream` (browsers and Node 18+, where it is zlib); undefined where there is none. */
async function gzip(body: string): Promise<Uint8Array | undefined> {
  if (typeof CompressionStream === 'undefined') return undefined
  const stream = new Blob([body]).stream().pipeThrough(new CompressionStream('gzip'))
  return new Uint8Array(await new Response(stream).arrayBuffer())
}

/** One attempt: the body gzipped above the threshold, this attempt's send time in `x-event-sent-at`. */
export async function sendBatch(transport: Transport, body: string, bytes: number, signal?: AbortSignal): Promise<SendOutcome> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (transport.token) headers['x-event-token'] = transport.token
  let payload: string | Uint8Array = body
  if (transport.threshold !== false && bytes >= transport.threshold) {
    const compressed = await gzip(body)
    if (compressed) {
      payload = compressed
      headers['content-encoding'] = 'gzip'
    }
  }
  headers['x-event-sent-at'] = new Date().toISOString()
  let response: Response
  try {
    response = await transport.fetch(ingestTarget(transport), { method: 'POST', headers, body: payload as BodyInit, ...(signal ? { signal } : {}) })
  } catch (error) {
    return { kind: 'network', error }
  }
  let parsed: unknown
  try {
    // The signal covers the body too: a server that stalls mid-answer is a failed attempt.
    parsed = await response.json()
  } catch (error) {
    // A 200 whose body is cut off leaves the outcome unknown: retried, dedupe by id makes it safe.
    if (response.ok) return { kind: 'network', error }
  }
  if (response.ok) return { kind: 'ok', status: response.status, body: parsed as IngestAnswer }
  return { kind: 'http', status: response.status, retryAfter: response.headers.get('retry-after'), body: parsed as Record<string, unknown> | undefined }
}

/**
 * A send that outlives the page: `navigator.sendBeacon` (a `text/plain` body, as a beacon must be),
 * else `fetch` with `keepalive`. The send time goes in `?sentAt=`, the key in `?key=` (a beacon
 * carries no header). Returns whether the browser took it.
 */
export function sendBeacon(transport: Transport, body: string): boolean {
  const target = ingestTarget(transport, new Date().toISOString())
  const nav = (globalThis as { navigator?: { sendBeacon?(url: string, data: Blob): boolean } }).navigator
  if (nav?.sendBeacon) return nav.sendBeacon(target, new Blob([body], { type: 'text/plain;charset=UTF-8' }))
  transport.fetch(target, { method: 'POST', keepalive: true, headers: { 'content-type': 'text/plain;charset=UTF-8' }, body }).catch(() => {})
  return true
}
