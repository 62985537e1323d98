import { IngestError } from '../base/errors'

/** The fields host body parsers put on their errors (body-parser, raw-body, co-body, inflation). */
interface ParserFailure {
  type?: string
  status?: number
  code?: unknown
  limit?: number
  encoding?: unknown
  charset?: unknown
  message?: string
}

/** An error raised by zlib while inflating: its codes (`Z_DATA_ERROR`, `ERR_BROTLI_…`, `ERR__ERROR_FORMAT_PADDING_1`). */
const zlibCode = /^(Z_|ERR_BROTLI|ERR__)/

/** inflation (used by co-body, so @koa/bodyparser) names the encoding only in its message. */
const unsupportedEncoding = /^Unsupported Content-Encoding: (.*)$/

/**
 * The refusal, in the contract's terms, of an error a host body parser raised while reading a
 * request's body: body-parser (express.json(), express.text(), express.raw()) and @koa/bodyparser
 * (co-body on raw-body and inflation). `undefined` for any other error, which is not ours to answer.
 * Both parsers inflate gzip, deflate and br themselves, so their decoding failures are the body's too.
 */
export function hostParserError(error: unknown): IngestError | undefined {
  if (error === null || typeof error !== 'object') return undefined
  const failure = error as ParserFailure
  const type = failure.type
  const message = String(failure.message ?? '')
  // body-parser's type; co-body rethrows JSON.parse's SyntaxError with status 400.
  if (type === 'entity.parse.failed' || (error instanceof SyntaxError && failure.status === 400)) {
    return new IngestError('invalid_json', `body is not valid JSON: ${message}`)
  }
  if (type === 'entity.too.large') {
    const limit = failure.limit ?? 0
    return new IngestError('body_too_large', `the body is over the host body parser's limit of ${limit} bytes`, { limit: 'hostParserLimit', value: limit })
  }
  const unknownCoding = failure.status === 415 ? unsupportedEncoding.exec(message) : null
  if ((type === 'encoding.unsupported' && failure.status === 415) || unknownCoding) {
    const name = unknownCoding ? unknownCoding[1]! : String(failure.encoding ?? '')
    return new IngestError('unsupported_encoding', `content-encoding ${JSON.stringify(name)} is not supported by the host body parser`, { contentEncoding: name })
  }
  if (type === 'charset.unsupported') {
    const charset = String(failure.charset ?? '')
    return new IngestError('unsupported_media_type', `content-type charset ${JSON.stringify(charset)} is not supported; send UTF-8`, { charset })
  }
  // A body that does not inflate: zlib's own error (given status 400 by body-parser, none by co-body).
  if ((failure.status === undefined || failure.status === 400) && typeof failure.code === 'string' && zlibCode.test(failure.code)) {
    return new IngestError('invalid_json', `body is not valid data of its content-encoding: ${message}`)
  }
  if (type === 'request.aborted') return new IngestError('request_aborted', 'the request ended before its body was read')
  return undefined
}
