import { IngestError, limitError } from './errors'

/**
 * A request body as an adapter hands it over: bytes, a stream of byte chunks (a Node request, a
 * web `ReadableStream`), or a value the host's own body parser already produced.
 */
export type BodySource =
  | { bytes: Uint8Array | string }
  | { stream: AsyncIterable<Uint8Array | string> }
  | { parsed: unknown }

function toBytes(chunk: Uint8Array | string): Uint8Array {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk
}

/**
 * Reads a body up to `limit` bytes. A declared Content-Length over the limit is refused before a
 * byte is read; a chunked body is refused as soon as it crosses the limit, so an oversize body is
 * never buffered whole.
 *
 * @throws IngestError `body_too_large` (413)
 */
export async function readBodyBytes(source: { bytes: Uint8Array | string } | { stream: AsyncIterable<Uint8Array | string> }, limit: number, declaredLength: number | undefined): Promise<Uint8Array> {
  if (declaredLength !== undefined && declaredLength > limit) {
    throw limitError('body_too_large', 'maxBodyBytes', limit, `a body of ${declaredLength} bytes`)
  }
  if ('bytes' in source) {
    const bytes = toBytes(source.bytes)
    if (bytes.length > limit) throw limitError('body_too_large', 'maxBodyBytes', limit, `a body of ${bytes.length} bytes`)
    return bytes
  }
  const chunks: Uint8Array[] = []
  let total = 0
  for await (const raw of source.stream) {
    const chunk = toBytes(raw)
    total += chunk.length
    if (total > limit) throw limitError('body_too_large', 'maxBodyBytes', limit, `a body of more than ${limit} bytes`)
    chunks.push(chunk)
  }
  if (chunks.length === 1) return chunks[0]!
  return Buffer.concat(chunks, total)
}

/**
 * Whether a body stream is a Node HTTP request (`IncomingMessage`), whose chunks are buffers Node
 * allocates for each read and hands over: nothing else holds them. Told by shape, so the core
 * needs no Node import.
 */
export function isNodeRequest(stream: unknown): boolean {
  const candidate = stream as { httpVersion?: unknown; socket?: unknown; headers?: unknown } | null
  return typeof candidate === 'object' && candidate !== null && typeof candidate.httpVersion === 'string'
    && typeof candidate.headers === 'object' && typeof candidate.socket === 'object'
}

/** Content types accepted on ingest: JSON, and text/plain carrying JSON (browser beacons). */
export function checkContentType(header: string | undefined): void {
  if (!header) {
    throw new IngestError('unsupported_media_type', 'content-type is missing; send application/json (or text/plain carrying JSON)')
  }
  const type = header.split(';', 1)[0]!.trim().toLowerCase()
  if (type === 'application/json' || type === 'text/plain' || (type.startsWith('application/') && type.endsWith('+json'))) return
  throw new IngestError('unsupported_media_type', `content-type ${JSON.stringify(type)} is not supported; send application/json (or text/plain carrying JSON)`, { contentType: type })
}
