/**
 * Stable, machine-readable error codes. Each maps to exactly one HTTP status in {@link errorStatus}.
 */
export type IngestErrorCode =
  | 'invalid_json'
  | 'not_an_array'
  | 'too_deep'
  | 'body_too_large'
  | 'event_too_large'
  | 'too_many_events'
  | 'unsupported_media_type'
  | 'unsupported_encoding'
  | 'token_missing'
  | 'token_invalid'
  | 'token_not_allowed'
  | 'key_invalid'
  | 'origin_forbidden'
  | 'admin_token_missing'
  | 'admin_token_invalid'
  | 'admin_forbidden'
  | 'admin_disabled'
  | 'invalid_query'
  | 'invalid_request'
  | 'not_found'
  | 'metrics_disabled'
  | 'method_not_allowed'
  | 'storage_unavailable'
  | 'in_progress'
  | 'request_aborted'
  | 'rate_limited'
  | 'no_sink'
  | 'too_many_replays'

/** The HTTP status of every error code, kept in this one place. */
export const errorStatus: Readonly<Record<IngestErrorCode, number>> = {
  invalid_json: 400,
  not_an_array: 400,
  too_deep: 400,
  invalid_query: 400,
  invalid_request: 400,
  request_aborted: 400,
  token_missing: 401,
  token_invalid: 401,
  token_not_allowed: 401,
  key_invalid: 401,
  origin_forbidden: 403,
  admin_token_missing: 401,
  admin_token_invalid: 401,
  admin_forbidden: 403,
  admin_disabled: 403,
  not_found: 404,
  metrics_disabled: 404,
  method_not_allowed: 405,
  body_too_large: 413,
  event_too_large: 413,
  too_many_events: 413,
  unsupported_media_type: 415,
  unsupported_encoding: 415,
  rate_limited: 429,
  no_sink: 409,
  too_many_replays: 409,
  storage_unavailable: 503,
  in_progress: 503,
}

/**
 * The one error type of event-ingest. `code` is stable and machine-readable, `message` names the
 * field or limit involved, `details` carries structured facts (the limit's name and value, an index).
 *
 * @example
 * try { model.validateBatch(input) } catch (error) {
 *   if (error instanceof IngestError && error.code === 'too_many_events') console.log(error.details)
 * }
 */
export class IngestError extends Error {
  override readonly name = 'IngestError'
  readonly code: IngestErrorCode
  readonly status: number
  readonly details: Record<string, unknown> | undefined

  constructor(code: IngestErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.status = errorStatus[code]
    this.details = details
  }

  /** The JSON body sent for this error: `{ code, message, ...details }`. */
  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.details }
  }
}

/** Thrown when a limit is exceeded; the message and details name the limit and its value. */
export function limitError(
  code: 'body_too_large' | 'event_too_large' | 'too_many_events' | 'too_deep',
  limit: string,
  value: number,
  what: string,
  extra?: Record<string, unknown>,
): IngestError {
  return new IngestError(code, `${what} is over the ${limit} limit of ${value}`, { limit, value, ...extra })
}
