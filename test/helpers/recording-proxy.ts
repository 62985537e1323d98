import { createServer, type IncomingMessage } from 'node:http'
import { gunzipSync } from 'node:zlib'
import { closeServer, listen } from './servers'

/** One request the proxy received on its way to the server. */
export interface SeenRequest {
  method: string
  path: string
  headers: IncomingMessage['headers']
  /** The body as received (maybe gzip). */
  raw: Buffer
  /** The body decoded: the JSON text. */
  text: string
  /** The ids of the batch, when the body is one. */
  ids: string[]
  at: number
}

/**
 * What the proxy does with an ingest request (the `n`th, from 1): pass it to the server, answer
 * itself, or pass it on and answer something else (a lost 200: the server stored the batch, the
 * client hears otherwise), or never answer (`hang`).
 */
export type ProxyBehaviour = (request: SeenRequest, n: number) => 'forward' | 'hang' | { status: number; headers?: Record<string, string>; body?: unknown; forward?: boolean }

/**
 * A loopback proxy in front of a real event-ingest server that records every ingest request and
 * can inject answers. Other routes (the schema) are passed through unrecorded.
 */
export async function startRecordingProxy(target: string, behaviour: ProxyBehaviour = () => 'forward') {
  const seen: SeenRequest[] = []
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const raw = Buffer.concat(chunks)
    const forward = async () => {
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([name]) => !['host', 'connection', 'content-length', 'transfer-encoding'].includes(name)).map(([k, v]) => [k, String(v)]))
      const response = await fetch(target + req.url, { method: req.method, headers, ...(raw.length ? { body: raw } : {}) })
      const answerHeaders: Record<string, string> = {}
      response.headers.forEach((value, name) => (answerHeaders[name] = value))
      return { status: response.status, headers: answerHeaders, text: await response.text() }
    }
    const path = req.url ?? '/'
    if (!path.includes('/events/ingest')) {
      const answer = await forward()
      res.writeHead(answer.status, { 'content-type': answer.headers['content-type'] ?? 'application/json' }).end(answer.text)
      return
    }
    const text = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw).toString('utf8') : raw.toString('utf8')
    let ids: string[] = []
    try {
      ids = (JSON.parse(text) as { id: string }[]).map((event) => event.id)
    } catch {}
    const request: SeenRequest = { method: req.method ?? '', path, headers: req.headers, raw, text, ids, at: Date.now() }
    seen.push(request)
    const action = behaviour(request, seen.length)
    if (action === 'forward') {
      const answer = await forward()
      res.writeHead(answer.status, Object.fromEntries(Object.entries(answer.headers).filter(([name]) => ['content-type', 'retry-after'].includes(name)))).end(answer.text)
      return
    }
    if (action === 'hang') return
    if (action.forward) await forward()
    res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers }).end(JSON.stringify(action.body ?? {}))
  })
  const url = await listen(server)
  return { url, seen, close: () => closeServer(server) }
}
