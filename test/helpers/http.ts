import { request as httpRequest } from 'node:http'

export interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: any
}

/**
 * A request over real HTTP with full control of headers and body framing: `chunks` are written one
 * by one without a Content-Length (chunked transfer encoding).
 */
export function rawRequest(url: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer; chunks?: (string | Buffer)[] } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'POST', headers: options.headers }, (res) => {
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
