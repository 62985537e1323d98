import { IngestError } from '../base/errors'
import { SCHEMA_VERSION, eventSources } from './definitions'
import { describeValue, parseBatchBytes, parseBatchText } from './json'
import type { ReceivedBody } from './received'
import type { BatchMapping, FieldError } from './validate'

// CloudEvents 1.0 (JSON event format, HTTP binding structured and batched modes) mapped to the
// envelope and back. The mapping is a table of attribute names; everything else is checked by the
// envelope's own validation, whose error paths are then named in CloudEvents terms.

/** The structured mode's content type: the body is one CloudEvent. */
export const CLOUDEVENTS_CONTENT_TYPE = 'application/cloudevents+json'
/** The batched mode's content type: the body is a JSON array of CloudEvents. */
export const CLOUDEVENTS_BATCH_CONTENT_TYPE = 'application/cloudevents-batch+json'

/** The CloudEvents spec version read and written. */
export const CLOUDEVENTS_SPEC_VERSION = '1.0'

/**
 * How a CloudEvent's `source` (a URI-reference such as `/storefront` or
 * `https://shop.example/storefront`) becomes the envelope's `source`: a function (undefined: no
 * source, the event is rejected naming `source`), or a record of CloudEvents source to envelope
 * source (a source it does not list is rejected).
 */
export type CloudEventsSourceMap = ((ceSource: string) => string | undefined) | Readonly<Record<string, string>>

/** Attributes that have an envelope field, CloudEvents name to envelope name. */
const toEnvelopeNames = {
  id: 'id',
  type: 'name',
  time: 'occurredAt',
  source: 'source',
  data: 'payload',
  schemaversion: 'schemaVersion',
  companyid: 'companyId',
  subjectid: 'subjectId',
} as const

const toCloudEventNames: Record<string, string> = Object.fromEntries(Object.entries(toEnvelopeNames).map(([ce, envelope]) => [envelope, ce]))

/**
 * The envelope field holding the attributes that have no envelope field of their own: the
 * CloudEvent's `source` as sent, `subject`, `dataschema` and any other extension attribute. Kept
 * so that forwarding as CloudEvents gives them back.
 */
export const CLOUDEVENT_ATTRIBUTES_FIELD = 'cloudEvent'

/** Attributes read here and not kept under {@link CLOUDEVENT_ATTRIBUTES_FIELD}. */
const consumed = new Set<string>([...Object.keys(toEnvelopeNames), 'specversion', 'datacontenttype'])

/**
 * The default source mapping: the CloudEvents source itself when it is one of the model's sources
 * (`storefront`), else its last path segment when that is one (`/storefront`,
 * `https://shop.example/apps/storefront`, `urn:x:storefront` has none); undefined otherwise.
 */
export function defaultCloudEventsSource(ceSource: string): string | undefined {
  const sources: readonly string[] = eventSources
  if (sources.includes(ceSource)) return ceSource
  // The path of a URI-reference, without query and fragment; a trailing slash is ignored.
  const path = ceSource.replace(/[?#].*$/s, '').replace(/\/+$/, '')
  const slash = path.lastIndexOf('/')
  if (slash < 0) return undefined
  const segment = path.slice(slash + 1)
  return sources.includes(segment) ? segment : undefined
}

/** The source mapping as a function. */
export function sourceMapper(map: CloudEventsSourceMap | undefined): (ceSource: string) => string | undefined {
  if (map === undefined) return defaultCloudEventsSource
  if (typeof map === 'function') return map
  return (ceSource) => (Object.hasOwn(map, ceSource) ? map[ceSource] : undefined)
}

/** The outcome of mapping one CloudEvent: the envelope to validate, or the attributes at fault. */
export type MappedCloudEvent = { ok: true; event: Record<string, unknown> } | { ok: false; errors: FieldError[] }

function fault(path: string, message: string): FieldError {
  return { path, message: `${path}: ${message}` }
}

/** A JSON media type: `application/json`, or any `+json` one (parameters ignored). */
function isJsonMediaType(value: string): boolean {
  const type = value.split(';', 1)[0]!.trim().toLowerCase()
  return type === 'application/json' || type === 'text/json' || /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+\+json$/.test(type)
}

/**
 * Maps one CloudEvent (a JSON object, already checked for depth and prototype keys) to an envelope.
 * Refused here, naming the attribute: a `specversion` other than `"1.0"`, no `time` (the envelope
 * requires `occurredAt`), `data_base64` (the payload is a JSON object), a `datacontenttype` that is
 * not JSON, a `source` that is missing, not a string or mapped to no source, and an extension
 * attribute that is not a string, number or boolean. Everything else is left to the envelope's
 * validation (see {@link cloudEventPath} for its error paths).
 */
export function cloudEventToEnvelope(input: Record<string, unknown>, sourceOf: (ceSource: string) => string | undefined): MappedCloudEvent {
  const errors: FieldError[] = []
  const specversion = input.specversion
  if (specversion !== CLOUDEVENTS_SPEC_VERSION) {
    errors.push(fault('specversion', specversion === undefined ? `is required; send "${CLOUDEVENTS_SPEC_VERSION}"` : `expected "${CLOUDEVENTS_SPEC_VERSION}", got ${describeValue(specversion)}`))
  }
  if (input.time === undefined || input.time === null) errors.push(fault('time', 'is required: it is the envelope\'s occurredAt'))
  if (input.data_base64 !== undefined) errors.push(fault('data_base64', 'binary data is not supported; send the payload as a JSON object in data'))
  const contentType = input.datacontenttype
  if (contentType !== undefined && contentType !== null && (typeof contentType !== 'string' || !isJsonMediaType(contentType))) {
    errors.push(fault('datacontenttype', `expected application/json (data is a JSON object), got ${describeValue(contentType)}`))
  }
  const ceSource = input.source
  let source: unknown
  if (typeof ceSource !== 'string' || ceSource === '') {
    errors.push(fault('source', ceSource === undefined ? 'is required' : `expected a URI-reference, got ${describeValue(ceSource)}`))
  } else {
    source = sourceOf(ceSource)
    if (source === undefined) {
      errors.push(fault('source', `${describeValue(ceSource)} maps to none of the sources ${eventSources.join(', ')} (map it with the cloudEvents.source option)`))
    }
  }
  const event: Record<string, unknown> = {}
  const attributes: Record<string, unknown> = { source: ceSource }
  for (const key of Object.keys(input)) {
    const value = input[key]
    if (Object.hasOwn(toEnvelopeNames, key)) {
      if (value !== null || key === 'data') event[toEnvelopeNames[key as keyof typeof toEnvelopeNames]] = value
    } else if (!consumed.has(key) && key !== 'data_base64' && value !== null) {
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
        errors.push(fault(key, `a CloudEvents attribute must be a string, number or boolean, got ${describeValue(value)}`))
      }
      attributes[key] = value
    }
  }
  if (errors.length > 0) return { ok: false, errors }
  event.source = source
  // Extension values often travel as strings: "1" is version 1.
  const version = event.schemaVersion
  if (version === undefined) event.schemaVersion = SCHEMA_VERSION
  else if (typeof version === 'string' && /^[0-9]{1,9}$/.test(version)) event.schemaVersion = Number(version)
  event[CLOUDEVENT_ATTRIBUTES_FIELD] = attributes
  return { ok: true, event }
}

/**
 * An envelope error path in CloudEvents terms: `name` is `type`, `occurredAt` is `time`,
 * `payload.items.0` is `data.items.0`, `schemaVersion` is `schemaversion`.
 */
export function cloudEventPath(path: string): string {
  const dot = path.indexOf('.')
  const head = dot < 0 ? path : path.slice(0, dot)
  const renamed = Object.hasOwn(toCloudEventNames, head) ? toCloudEventNames[head]! : head
  return dot < 0 ? renamed : renamed + path.slice(dot)
}

/**
 * An envelope field error named in CloudEvents terms (its path, and the path that starts its
 * message); an error of the mapped source says which CloudEvents source it came from.
 */
export function cloudEventError(error: FieldError, event?: Record<string, unknown>): FieldError {
  if (error.path === '') return error
  if (error.path === 'source') {
    const ceSource = (event?.[CLOUDEVENT_ATTRIBUTES_FIELD] as { source?: unknown } | undefined)?.source
    return typeof ceSource === 'string' && ceSource !== event?.source ? { path: 'source', message: `${error.message} (mapped from ${JSON.stringify(ceSource)})` } : error
  }
  const path = cloudEventPath(error.path)
  if (path === error.path) return error
  const prefix = `${error.path}: `
  return { path, message: error.message.startsWith(prefix) ? `${path}: ${error.message.slice(prefix.length)}` : error.message }
}

/**
 * A stored envelope as a CloudEvent: `specversion` "1.0", `id`, `type` (the name), `source` (given),
 * `time` (`occurredAt`), `datacontenttype` "application/json", `data` (the payload), and the
 * extensions `schemaversion`, `companyid` and `subjectid`, plus the attributes the event came with
 * when it was received as a CloudEvent (`subject`, `dataschema`, other extensions).
 */
export function envelopeToCloudEvent(envelope: Record<string, unknown>, source: string): Record<string, unknown> {
  const event: Record<string, unknown> = { specversion: CLOUDEVENTS_SPEC_VERSION, id: envelope.id, type: envelope.name, source }
  const kept = envelope[CLOUDEVENT_ATTRIBUTES_FIELD]
  if (typeof kept === 'object' && kept !== null && !Array.isArray(kept)) {
    for (const [key, value] of Object.entries(kept)) {
      // Only what is an attribute name and not one written here.
      if (key !== 'source' && !consumed.has(key) && /^[a-z0-9]{1,20}$/.test(key)) event[key] = value
    }
  }
  event.time = envelope.occurredAt
  event.datacontenttype = 'application/json'
  event.schemaversion = envelope.schemaVersion
  if (envelope.companyId !== undefined) event.companyid = envelope.companyId
  if (envelope.subjectId !== undefined) event.subjectid = envelope.subjectId
  event.data = envelope.payload
  return event
}

/**
 * The CloudEvents source an envelope is forwarded with by default: the one it was received with,
 * when it came as a CloudEvent, else `/<source>` (which the default ingest mapping reads back).
 */
export function defaultForwardSource(envelope: Record<string, unknown>): string {
  const kept = envelope[CLOUDEVENT_ATTRIBUTES_FIELD] as { source?: unknown } | undefined
  if (typeof kept === 'object' && kept !== null && typeof kept.source === 'string' && kept.source !== '') return kept.source
  return `/${String(envelope.source)}`
}

/**
 * The mapping `validateBatch` reads CloudEvents with: each element mapped by
 * {@link cloudEventToEnvelope}, and the envelope's errors named in CloudEvents terms.
 *
 * @example
 * const { events, rejected } = model.validateBatch(JSON.parse(body), undefined, cloudEventsMapping())
 */
export function cloudEventsMapping(source?: CloudEventsSourceMap): BatchMapping {
  const sourceOf = sourceMapper(source)
  return { map: (item) => cloudEventToEnvelope(item, sourceOf), error: cloudEventError, element: 'a CloudEvent' }
}

const OPEN = Buffer.from('[')
const CLOSE = Buffer.from(']')

/**
 * Parses a structured-mode body (one CloudEvent) as a batch of one, with the limits of
 * `parseBatchBytes`: the bytes are read as the array `[body]`, so the event's depth and size are
 * those of an element of a batch.
 *
 * @throws IngestError as `parseBatchBytes`, and `invalid_json` when the body is not one JSON object
 */
export function parseCloudEventBytes(bytes: Uint8Array, maxDepth: number, maxEventBytes = 0): ReceivedBody {
  const start = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0
  let body: ReceivedBody
  try {
    body = parseBatchBytes(Buffer.concat([OPEN, bytes.subarray(start), CLOSE]), maxDepth, maxEventBytes, true)
  } catch (error) {
    throw shifted(error, start - 1)
  }
  return oneEvent(body)
}

/** {@link parseCloudEventBytes} of a body a host parser kept as text. */
export function parseCloudEventText(text: string, maxDepth: number, maxEventBytes = 0): ReceivedBody {
  const start = text.charCodeAt(0) === 0xfeff ? 1 : 0
  let body: ReceivedBody
  try {
    body = parseBatchText(`[${start ? text.slice(1) : text}]`, maxDepth, maxEventBytes)
  } catch (error) {
    throw shifted(error, start - 1)
  }
  return oneEvent(body)
}

/** A structured-mode body a host parser already parsed, as a batch of one. */
export function cloudEventBatchOf(value: unknown): unknown[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw notOneEvent(value)
  return [value]
}

function oneEvent(body: ReceivedBody): ReceivedBody {
  const value = body.value as unknown[]
  if (value.length !== 1) throw notOneEvent(value.length === 0 ? undefined : 'several')
  cloudEventBatchOf(value[0])
  return body
}

function notOneEvent(value: unknown): IngestError {
  const got = value === 'several' ? 'several JSON values' : describeValue(value)
  return new IngestError('invalid_json', `an ${CLOUDEVENTS_CONTENT_TYPE} body must be one CloudEvent (a JSON object), got ${got}; send several as ${CLOUDEVENTS_BATCH_CONTENT_TYPE} (a JSON array)`)
}

/** A UTF-8 error of the wrapped body, at its offset in the body as sent. */
function shifted(error: unknown, by: number): unknown {
  if (!(error instanceof IngestError) || typeof error.details?.offset !== 'number' || error.details.offset < 0) return error
  const offset = error.details.offset + by
  return new IngestError(error.code, error.message.replace(/at (byte|character) \d+/, `at $1 ${offset}`), { ...error.details, offset })
}
