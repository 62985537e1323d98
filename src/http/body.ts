import { IngestError, limitError } from '../base/errors'

/**
 * A request body as an adapter hands it over: bytes, a stream of byte chunks (a Node request, a
 * web `ReadableStream`), a value the host's own body parser already produced, or the refusal a
 * host's body parser met (mapped to the contract's error), answered and counted as the core's own.
 */
export type BodySource =
  | { bytes: Uint8Array | string }
  | { stream: AsyncIterable<Uint8Array | string> }
  | { parsed: unknown }
  | { refused: IngestError }

function toBytes(chunk: Uint8Array | string): Uint8Array {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk
}

/**
 * Reads a body up to `limit` bytes. A declared Content-Length over the limit is refused before a
 * byte is read; a chunked body is refused as soon as it crosses the limit, so an oversize body is
 * never buffered whole.
 *
 * Not an async function, so that reading a Node request, the common case, costs the one promise
 * of its events and no layer around it: every outcome is a settled promise, never a throw.
 *
 * @throws IngestError `body_too_large` (413), `request_aborted` when the stream fails (its client went away)
 */
export function readBodyBytes(source: { bytes: Uint8Array | string } | { stream: AsyncIterable<Uint8Array | string> }, limit: number, declaredLength: number | undefined): Promise<Uint8Array> {
  if (declaredLength !== undefined && declaredLength > limit) {
    return Promise.reject(limitError('body_too_large', 'maxBodyBytes', limit, `a body of ${declaredLength} bytes`))
  }
  if ('bytes' in source) {
    const bytes = toBytes(source.bytes)
    if (bytes.length > limit) return Promise.reject(limitError('body_too_large', 'maxBodyBytes', limit, `a body of ${bytes.length} bytes`))
    return Promise.resolve(bytes)
  }
  try {
    // A host that listens for 'readable' reads the stream itself: then it does not flow, and only
    // the iterator (which reads with read()) gets its chunks.
    const node = isNodeRequest(source.stream) ? (source.stream as unknown as NodeReadable) : undefined
    if (node && node.listenerCount('readable') === 0) return readNodeRequest(node, limit)
  } catch (error) {
    // A stream shaped like a Node request that is not quite one.
    return Promise.reject(aborted(error))
  }
  return readStream(source.stream, limit)
}

/** Reads any other stream of chunks with its iterator, up to `limit` bytes. */
async function readStream(stream: AsyncIterable<Uint8Array | string>, limit: number): Promise<Uint8Array> {
  try {
    const chunks = new Chunks(limit)
    for await (const raw of stream) chunks.add(raw)
    return chunks.bytes()
  } catch (error) {
    throw aborted(error)
  }
}

/** A body stream fails when its client goes away mid-upload: that ends the request, it is no bug. */
function aborted(error: unknown): IngestError {
  if (error instanceof IngestError) return error
  const reason = error instanceof Error ? error.message : String(error)
  return new IngestError('request_aborted', `the request ended before its body was read: ${reason}`, undefined, { cause: error })
}

/** The chunks of a body read so far, refused as soon as they cross `limit`. */
class Chunks {
  private readonly list: Uint8Array[] = []
  private total = 0
  constructor(private readonly limit: number) {}

  /** @throws IngestError `body_too_large` once the body is over the limit */
  add(raw: Uint8Array | string): void {
    const chunk = toBytes(raw)
    this.total += chunk.length
    if (this.total > this.limit) throw limitError('body_too_large', 'maxBodyBytes', this.limit, `a body of more than ${this.limit} bytes`)
    this.list.push(chunk)
  }

  bytes(): Uint8Array {
    return this.list.length === 1 ? this.list[0]! : Buffer.concat(this.list, this.total)
  }
}

/** The part of a Node readable stream (an `IncomingMessage`) read here; no Node import in the core. */
interface NodeReadable {
  on(event: string, listener: (...args: any[]) => void): unknown
  off(event: string, listener: (...args: any[]) => void): unknown
  pause(): unknown
  resume(): unknown
  listenerCount(event: string): number
  readonly readableEnded: boolean
  readonly destroyed: boolean
  readonly errored?: unknown
}

/**
 * Reads a Node request with its events, without the async iterator's promise per chunk and its
 * end-of-stream machinery (a fixed cost on every request): chunks, errors and a request closed
 * early as `for await` sees them (as `request_aborted`); the rest of an oversize body is left unread.
 */
function readNodeRequest(stream: NodeReadable, limit: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    if (stream.readableEnded) return resolve(new Uint8Array(0))
    if (stream.destroyed) return reject(aborted(stream.errored ?? prematureClose()))
    const chunks = new Chunks(limit)
    const done = () => {
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('error', onError)
      stream.off('close', onClose)
    }
    const onData = (raw: Uint8Array | string) => {
      try {
        chunks.add(raw)
      } catch (error) {
        // Not read further: the 413 closes the connection (`connection: close`) once it is sent.
        done()
        stream.pause()
        reject(error)
      }
    }
    const onEnd = () => {
      done()
      resolve(chunks.bytes())
    }
    const onError = (error: unknown) => {
      done()
      reject(aborted(error))
    }
    const onClose = () => {
      if (stream.readableEnded) return
      done()
      reject(aborted(prematureClose()))
    }
    try {
      stream.on('data', onData)
      stream.on('end', onEnd)
      stream.on('error', onError)
      stream.on('close', onClose)
      // Flowing even if the host paused it: this is the one reader of the body.
      stream.resume()
    } catch (error) {
      // Not a stream after all (see isNodeRequest): the listeners that are on settle nothing more.
      reject(aborted(error))
    }
  })
}

function prematureClose(): Error {
  return Object.assign(new Error('the request closed before its body was read'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })
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

/**
 * What an ingest body holds, by its content type: a JSON array of envelopes, one CloudEvent
 * (structured mode) or a JSON array of CloudEvents (batched mode).
 */
export type BodyFormat = 'envelopes' | 'cloudevent' | 'cloudevents'

/**
 * Content types accepted on ingest: JSON, text/plain carrying JSON (browser beacons), and the
 * CloudEvents structured and batched modes.
 */
export function checkContentType(header: string | undefined): BodyFormat {
  if (!header) {
    throw new IngestError('unsupported_media_type', 'content-type is missing; send application/json (or text/plain carrying JSON)')
  }
  // The usual one, as sent, with nothing to cut or fold.
  if (header === 'application/json') return 'envelopes'
  const type = header.split(';', 1)[0]!.trim().toLowerCase()
  if (type === 'application/cloudevents+json') return 'cloudevent'
  if (type === 'application/cloudevents-batch+json') return 'cloudevents'
  if (type === 'application/json' || type === 'text/plain' || (type.startsWith('application/') && type.endsWith('+json'))) return 'envelopes'
  throw new IngestError('unsupported_media_type', `content-type ${JSON.stringify(type)} is not supported; send application/json (or text/plain carrying JSON)`, { contentType: type })
}
