import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'

export interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: any
}

/**
 * A request over real HTTP with full control of headers and body framing: `chunks` are written one
 * by one without a Content-Length (chunked transfer encoding). `path` replaces the URL's path and
 * query with a request target sent exactly as given (nothing resolved or re-encoded).
 */
export function rawRequest(url: string, options: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer; chunks?: (string | Buffer)[] } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'POST', headers: options.headers, ...(options.path === undefined ? {} : { path: options.path }) }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (chunk: Buffer) => parts.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8')
        let json: unknown
        try {
          json = text ? JSON.parse(text) : undefined
        } catch {
          json = undefined
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (options.chunks) {
      for (const chunk of options.chunks) req.write(chunk)
      req.end()
    } else {
      req.end(options.body)
    }
  })
}

/** POSTs a JSON batch with fetch. */
export async function postEvents(url: string, events: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${url}/events/ingest`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof events === 'string' ? events : JSON.stringify(events),
  })
  const text = await response.text()
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined }
}

export async function getJson(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers })
  const text = await response.text()
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined }
}

/** What {@link slowUpload} saw. */
export interface UploadOutcome {
  /** The answer's status line and headers (lowercased names), if one came. */
  status?: number
  headers: Record<string, string>
  /** Body bytes written before the server closed the connection (or all of them). */
  sent: number
  /** The server closed the connection before the whole body was written. */
  closedEarly: boolean
  /** Neither happened within `deadlineMs`: the client gave up. */
  timedOut: boolean
}

/**
 * Sends a request over a raw socket: the head at once, then `total` body bytes in `chunkBytes`
 * pieces every `intervalMs`, with a Content-Length or chunked, until all are written or the server
 * closes the connection. Resolves once the socket is closed (the client ends its side after the
 * last byte, and gives up `closeAfterMs` after that).
 */
export function slowUpload(url: string, options: { headers: Record<string, string>; total: number; chunked?: boolean; chunkBytes?: number; intervalMs?: number; closeAfterMs?: number; deadlineMs?: number }): Promise<UploadOutcome> {
  const target = new URL(url)
  const chunkBytes = options.chunkBytes ?? 64 * 1024
  return new Promise((resolve) => {
    // Half-open allowed: a server's FIN alone does not stop this client, only a closed connection.
    const socket = connect({ port: Number(target.port), host: target.hostname, allowHalfOpen: true })
    const outcome: UploadOutcome = { headers: {}, sent: 0, closedEarly: false, timedOut: false }
    const deadline = setTimeout(() => {
      outcome.timedOut = true
      socket.destroy()
    }, options.deadlineMs ?? 15_000)
    let received = Buffer.alloc(0)
    let timer: NodeJS.Timeout | undefined
    let giveUp: NodeJS.Timeout | undefined
    const framing = options.chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(options.total) }
    const head = Object.entries({ host: target.host, ...options.headers, ...framing }).map(([name, value]) => `${name}: ${value}\r\n`).join('')
    socket.on('connect', () => {
      socket.write(`POST ${target.pathname}${target.search} HTTP/1.1\r\n${head}\r\n`)
      timer = setInterval(() => {
        // Written as the server reads: a server that stops reading stops this client too.
        if (socket.destroyed || socket.writableEnded || socket.writableLength > chunkBytes * 4) return
        const size = Math.min(chunkBytes, options.total - outcome.sent)
        const piece = Buffer.alloc(size, 0x20)
        socket.write(options.chunked ? Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), piece, Buffer.from('\r\n')]) : piece)
        outcome.sent += size
        if (outcome.sent >= options.total) {
          clearInterval(timer)
          if (options.chunked) socket.end('0\r\n\r\n')
          else socket.end()
          giveUp = setTimeout(() => socket.destroy(), options.closeAfterMs ?? 2000)
        }
      }, options.intervalMs ?? 2)
    })
    socket.on('data', (data: Buffer) => {
      received = Buffer.concat([received, data])
      const end = received.indexOf('\r\n\r\n')
      if (outcome.status !== undefined || end < 0) return
      const [statusLine, ...lines] = received.subarray(0, end).toString('latin1').split('\r\n')
      outcome.status = Number(statusLine!.split(' ')[1])
      for (const line of lines) {
        const colon = line.indexOf(':')
        outcome.headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
      }
    })
    // A reset from the server shows as an error: the connection is closed either way.
    socket.on('error', () => {})
    socket.on('close', () => {
      clearInterval(timer)
      clearTimeout(giveUp)
      clearTimeout(deadline)
      outcome.closedEarly = !outcome.timedOut && outcome.sent < options.total
      resolve(outcome)
    })
  })
}

/**
 * A client busy elsewhere while it uploads: it sends the head and `first` (chunked), reads nothing
 * for `busyMs`, sends `later`, waits `busyMs` again and only then reads. A server that destroys the
 * connection right after its answer makes that second write fail (a reset), and the answer is lost
 * as Node's clients lose it; a server that reads on for a while lets the answer through.
 */
export function busyClientUpload(url: string, options: { headers: Record<string, string>; first: Buffer; later: Buffer; busyMs: number }): Promise<{ status?: number; text: string; error?: string }> {
  const target = new URL(url)
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
  const chunk = (data: Buffer) => Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')])
  return new Promise((resolve) => {
    const socket = connect({ port: Number(target.port), host: target.hostname, allowHalfOpen: true })
    const result: { status?: number; text: string; error?: string } = { text: '' }
    socket.pause()
    socket.on('error', (error: NodeJS.ErrnoException) => (result.error ??= error.code ?? error.message))
    socket.on('data', (data: Buffer) => (result.text += data.toString('latin1')))
    socket.on('close', () => {
      const match = /^HTTP\/1\.1 (\d{3})/.exec(result.text)
      if (match) result.status = Number(match[1])
      resolve(result)
    })
    socket.on('connect', async () => {
      const head = Object.entries({ host: target.host, ...options.headers, 'transfer-encoding': 'chunked' }).map(([name, value]) => `${name}: ${value}\r\n`).join('')
      socket.write(`POST ${target.pathname}${target.search} HTTP/1.1\r\n${head}\r\n`)
      socket.write(chunk(options.first))
      await sleep(options.busyMs)
      if (!socket.destroyed) socket.write(chunk(options.later))
      await sleep(options.busyMs)
      if (!socket.destroyed) {
        socket.end('0\r\n\r\n')
        socket.resume()
      }
      setTimeout(() => socket.destroy(), 5000).unref()
    })
  })
}
