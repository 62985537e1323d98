import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib'
import type { Transform } from 'node:stream'
import { isNodeRequest, readBodyBytes, type BodySource } from './body'
import { IngestError, limitError } from '../base/errors'

/** The content codings a body may be sent with (besides `identity`, which is none). */
export type ContentCoding = 'gzip' | 'deflate' | 'br'

const codings: Readonly<Record<string, ContentCoding>> = { gzip: 'gzip', 'x-gzip': 'gzip', deflate: 'deflate', br: 'br' }

/**
 * The coding of a body from its `Content-Encoding` header: `undefined` for none or `identity`.
 * `x-gzip` is gzip (RFC 9110). One coding at most: a stacked list (`gzip, br`) is refused, as is
 * any coding not listed in {@link ContentCoding}, before a byte of the body is read.
 *
 * @throws IngestError `unsupported_encoding` (415), naming the coding
 */
export function contentCodingOf(header: string | undefined): ContentCoding | undefined {
  if (header === undefined || header === '') return undefined
  let coding: ContentCoding | undefined
  for (const part of header.split(',')) {
    const name = part.trim().toLowerCase()
    if (name === '' || name === 'identity') continue
    const known = codings[name]
    if (known === undefined) {
      throw new IngestError('unsupported_encoding', `content-encoding ${JSON.stringify(name)} is not supported; send gzip, deflate, br or identity`, { contentEncoding: name })
    }
    if (coding !== undefined) {
      const list = header.trim()
      throw new IngestError('unsupported_encoding', `content-encoding ${JSON.stringify(list)} stacks several encodings; send one of gzip, deflate or br`, { contentEncoding: list })
    }
    coding = known
  }
  return coding
}

/** Whether a `Content-Encoding` header names any coding other than `identity`. */
export function contentCodingDeclared(header: string | undefined): boolean {
  if (header === undefined) return false
  return header.split(',').some((part) => {
    const name = part.trim().toLowerCase()
    return name !== '' && name !== 'identity'
  })
}

/** The limits decoding is held to. */
export interface DecodeLimits {
  /** Most bytes of the body as sent, and of the body decoded. */
  maxBodyBytes: number
  /** Most times larger than the bytes read so far their decoded form may be. */
  maxInflateRatio: number
}

/**
 * The decoded form of an encoded body, as a stream of chunks inflated while the encoded bytes are
 * read (never inflated whole, then measured). Reading and decoding stop at the first chunk that
 * takes the body over a limit: the encoded bytes over `maxBodyBytes` (a declared Content-Length
 * over it, before a byte is read), the decoded bytes over `maxBodyBytes`, or the decoded bytes
 * over `maxInflateRatio` times the encoded bytes read so far. A Node request is left open when
 * reading stops early, so the refusal can still be sent on it.
 *
 * @throws IngestError (from the stream) `body_too_large` (413) naming the limit; `invalid_json`
 *   (400) for bytes that are not valid data of the coding
 */
export function decodeBody(
  source: Exclude<BodySource, { parsed: unknown } | { refused: IngestError }>,
  coding: ContentCoding,
  limits: DecodeLimits,
  declaredLength: number | undefined,
): { stream: AsyncIterable<Uint8Array> } {
  if (declaredLength !== undefined && declaredLength > limits.maxBodyBytes) {
    throw limitError('body_too_large', 'maxBodyBytes', limits.maxBodyBytes, `a body of ${declaredLength} bytes`)
  }
  return { stream: decoded(encodedChunks(source), coding, limits) }
}

/**
 * Reads a body to its end, decoded by its `Content-Encoding` header, within the limits (see
 * {@link decodeBody} and `readBodyBytes`): the bytes, once read, and whether they are this
 * request's alone (`owned`), as bytes read from a Node request (fresh buffers per read), decoded
 * here or made from text here are; bytes or chunks handed over by the caller stay the caller's.
 * The reading is the one promise (no layer of its own around it: see `readBodyBytes`).
 *
 * @throws IngestError `unsupported_encoding` (415) and a declared length over the limit, at once,
 *   before a byte is read; else `bytes` rejects as `readBodyBytes` and {@link decodeBody} do
 */
export function readRequestBody(
  source: Exclude<BodySource, { parsed: unknown } | { refused: IngestError }>,
  contentEncoding: string | undefined,
  limits: DecodeLimits,
  declaredLength: number | undefined,
): { bytes: Promise<Uint8Array>; owned: boolean } {
  const coding = contentCodingOf(contentEncoding)
  if (coding !== undefined) {
    return { bytes: readBodyBytes(decodeBody(source, coding, limits, declaredLength), limits.maxBodyBytes, undefined), owned: true }
  }
  return { bytes: readBodyBytes(source, limits.maxBodyBytes, declaredLength), owned: 'stream' in source ? isNodeRequest(source.stream) : typeof source.bytes === 'string' }
}

function createDecoder(coding: ContentCoding): Transform {
  switch (coding) {
    case 'gzip':
      return createGunzip()
    case 'deflate':
      return createInflate()
    case 'br':
      return createBrotliDecompress()
  }
}

async function* decoded(input: AsyncIterator<Uint8Array | string>, coding: ContentCoding, limits: DecodeLimits): AsyncGenerator<Uint8Array> {
  const { maxBodyBytes, maxInflateRatio } = limits
  const decoder = createDecoder(coding)
  let encodedBytes = 0
  let decodedBytes = 0
  let stopped = false
  // What failed on the reading side (the request, or the encoded-size limit), told apart from
  // errors of the decoder itself (the bytes are not valid data of the coding).
  let readFailure: unknown
  // The decoder's errors reach the loop below through its iterator; once that loop is gone, a late
  // one (the request closing after the answer) must not go unhandled.
  decoder.on('error', () => {})
  const feed = async () => {
    for (;;) {
      const next = await input.next()
      if (next.done || stopped || decoder.destroyed) break
      const chunk = typeof next.value === 'string' ? Buffer.from(next.value, 'utf8') : next.value
      encodedBytes += chunk.length
      if (encodedBytes > maxBodyBytes) throw limitError('body_too_large', 'maxBodyBytes', maxBodyBytes, `a body of more than ${maxBodyBytes} bytes`)
      if (!decoder.write(chunk)) await drained(decoder)
    }
    if (!stopped && !decoder.destroyed) decoder.end()
  }
  feed().catch((error: unknown) => {
    readFailure = error
    decoder.destroy(error as Error)
  })
  try {
    for await (const chunk of decoder as AsyncIterable<Uint8Array>) {
      decodedBytes += chunk.length
      if (decodedBytes > maxBodyBytes) {
        throw limitError('body_too_large', 'maxBodyBytes', maxBodyBytes, `a body decoding to more than ${maxBodyBytes} bytes`)
      }
      if (decodedBytes > maxInflateRatio * encodedBytes) {
        throw limitError('body_too_large', 'maxInflateRatio', maxInflateRatio, `a body decoding to more than ${maxInflateRatio} times its ${encodedBytes} encoded bytes`)
      }
      yield chunk
    }
  } catch (error) {
    if (error instanceof IngestError || (readFailure !== undefined && error === readFailure)) throw error
    throw new IngestError('invalid_json', `body is not valid ${coding} data (content-encoding: ${coding}): ${(error as Error).message}`, undefined, { cause: error })
  } finally {
    stopped = true
    decoder.destroy()
    // Stops reading; a Node request's iterator was made not to destroy the request.
    void input.return?.()?.catch(() => {})
  }
}

/** Resolves once a writable can take more, or is gone. */
function drained(stream: Transform): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed) return resolve()
    const done = () => {
      stream.off('drain', done)
      stream.off('close', done)
      resolve()
    }
    stream.on('drain', done)
    stream.on('close', done)
  })
}

/** The encoded chunks of a source, from an iterator that leaves a Node request open when it is returned early. */
function encodedChunks(source: { bytes: Uint8Array | string } | { stream: AsyncIterable<Uint8Array | string> }): AsyncIterator<Uint8Array | string> {
  if ('bytes' in source) {
    const bytes = source.bytes
    return (async function* () {
      yield bytes
    })()
  }
  const stream = source.stream as AsyncIterable<Uint8Array | string> & { iterator?: (options: { destroyOnReturn: boolean }) => AsyncIterator<Uint8Array | string> }
  if (typeof stream.iterator === 'function') return stream.iterator({ destroyOnReturn: false })
  return stream[Symbol.asyncIterator]()
}
