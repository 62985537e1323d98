import type { z } from 'zod'
import { limitError, IngestError } from '../base/errors'
import { describeValue, inspectValue } from './json'
import type { Limits } from './limits'
import type { ReceivedBody } from './received'
import { canonicalTime, withinYears } from './time'
import { SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, eventSources, type EventDefinitions, type SourcePolicy } from './definitions'

/** One problem with one field: a dotted path and a message a person can act on. */
export interface FieldError {
  /** Dotted path inside the event, such as `occurredAt` or `payload.items.0.sku`; empty for the event itself. */
  path: string
  /** Names the field and says what was expected and what came: `occurredAt: expected an ISO 8601 timestamp ..., got "yesterday"`. */
  message: string
}

/** An event of a batch that was not accepted. */
export interface RejectedEvent {
  /** Position in the batch, from 0. */
  index: number
  /** The event's id, when it was a readable string. */
  id?: string
  errors: FieldError[]
}

/** The outcome of validating a batch. */
export interface BatchResult<E> {
  /** Valid events, normalised (`occurredAt` in UTC), in batch order. */
  events: E[]
  /** Index in the batch of each valid event, parallel to `events`. */
  indexes: number[]
  rejected: RejectedEvent[]
  /**
   * The time of each event's `occurredAt` in ms, parallel to `events`, where validation read it
   * (NaN where it did not), so counting the batch need not parse the timestamps again.
   */
  times?: number[]
  /**
   * The body the batch was parsed from, as given, when every event was valid and stored exactly as
   * sent (so a store may keep its text or bytes instead of serialising the events again).
   */
  received?: ReceivedBody
}

/**
 * Another event format read as envelopes (CloudEvents): each element of a batch, an object
 * already checked for depth and prototype keys, is mapped to the envelope to validate, and the
 * envelope's errors are named in that format's terms.
 */
export interface BatchMapping {
  /** The envelope of one element, or the errors that keep it from being one. */
  map(item: Record<string, unknown>): { ok: true; event: Record<string, unknown> } | { ok: false; errors: FieldError[] }
  /** An error of the envelope `event` (as `map` made it) named in the format's terms. */
  error(error: FieldError, event: Record<string, unknown>): FieldError
  /** What one element is called in messages: `a CloudEvent`. */
  element: string
}

/** The outcome of validating one event. */
export type EventResult<E> = { ok: true; event: E } | { ok: false; id?: string; errors: FieldError[] }

interface ValidatorConfig {
  definitions: EventDefinitions
  envelope: z.ZodType
  limits: Limits
  sourcePolicy: SourcePolicy
}

const encoder = new TextEncoder()

function byteLength(value: unknown): number {
  const json = JSON.stringify(value)
  // Fast path: ASCII-only JSON is one byte a character.
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(json) ? json.length : encoder.encode(json).length
}

function getAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined
    current = (current as Record<PropertyKey, unknown>)[key]
  }
  return current
}

const expectedNames: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  object: 'a JSON object',
  record: 'a JSON object',
  array: 'an array',
  boolean: 'a boolean',
}

/** Turns a zod issue into a message that names the field and shows what came. */
export function formatIssue(issue: z.core.$ZodIssue, input: unknown, prefix: readonly PropertyKey[] = []): FieldError {
  const fullPath = [...prefix, ...issue.path]
  const path = fullPath.map(String).join('.')
  const value = getAt(input, issue.path)
  const got = describeValue(value)
  let message: string
  switch (issue.code) {
    case 'invalid_type':
      message = value === undefined ? 'is required' : `expected ${expectedNames[issue.expected] ?? issue.expected}, got ${got}`
      break
    case 'too_small':
    case 'too_big':
      message = boundMessage(issue, value, got)
      break
    case 'invalid_format':
      message = issue.format === 'datetime'
        ? `expected an ISO 8601 timestamp with Z or an offset (like 2026-01-31T12:00:00Z), got ${got}`
        : `expected ${issue.format}, got ${got}`
      break
    case 'not_multiple_of':
      message = `must be a multiple of ${String(issue.divisor)}, got ${got}`
      break
    case 'invalid_value':
      message = `expected one of ${issue.values.map((v) => String(v)).join(', ')}, got ${got}`
      break
    default:
      message = issue.message
  }
  return { path, message: path ? `${path}: ${message}` : message }
}

/**
 * A length, size or value bound as a person reads it: `exactly`, `at least`/`at most` where the
 * bound itself is allowed, `greater than`/`less than` where it is not (`positive()` with 0).
 */
function boundMessage(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig, value: unknown, got: string): string {
  const small = issue.code === 'too_small'
  const limit = small ? issue.minimum : issue.maximum
  const bound = issue.origin === 'date' ? new Date(Number(limit)).toISOString() : String(limit)
  const inclusive = issue.inclusive !== false
  const counted = issue.origin === 'string' ? 'characters' : issue.origin === 'array' || issue.origin === 'set' ? 'items' : undefined
  if (counted) {
    const size = typeof value === 'string' || Array.isArray(value) ? value.length : value instanceof Set ? value.size : undefined
    if (issue.origin === 'string' && small && !issue.exact && inclusive && Number(bound) <= 1) return 'must not be empty'
    const verb = counted === 'items' ? 'have' : 'be'
    const how = issue.exact ? 'exactly' : small ? (inclusive ? 'at least' : 'more than') : inclusive ? 'at most' : 'fewer than'
    return `must ${verb} ${how} ${bound} ${counted}${size === undefined ? '' : `, got ${size}`}`
  }
  const how = issue.exact ? 'exactly' : small ? (inclusive ? 'at least' : 'greater than') : inclusive ? 'at most' : 'less than'
  const shown = value instanceof Date ? value.toISOString() : typeof value === 'bigint' ? String(value) : got
  return `must be ${how} ${bound}, got ${shown}`
}

function readId(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const id = (value as Record<string, unknown>).id
  return typeof id === 'string' && id.length > 0 ? id : undefined
}

/** Builds the batch and single-event validators of a model. */
export function createBatchValidator(config: ValidatorConfig) {
  const { definitions, envelope, limits, sourcePolicy } = config
  const names = Object.keys(definitions)
  const newest = SUPPORTED_SCHEMA_VERSIONS.reduce((a, b) => Math.max(a, b), SCHEMA_VERSION)

  // The fast path: a hand-written check of the envelope that accepts only what the zod schema
  // accepts (a contract test holds the two together). Valid events, the common case, skip zod;
  // anything it does not accept goes through zod for the precise errors.
  const occurredAtShape = (envelope as unknown as { shape?: Record<string, { _zod?: { pattern?: RegExp } }> }).shape?.occurredAt
  const datetime = occurredAtShape?._zod?.pattern
  const sources = new Set<string>(eventSources)
  const { maxIdLength, maxRefLength } = limits

  function optionalRef(value: unknown): boolean {
    return value === undefined || (typeof value === 'string' && value.length > 0 && value.length <= maxRefLength)
  }

  // Whether the last event `fast` accepted came out exactly as given, and the time of its
  // occurredAt in ms.
  let fastUnchanged = false
  let fastTime = Number.NaN

  /**
   * Returns the normalised event (and sets `fastUnchanged`), or undefined when the event needs the
   * full (zod) check.
   */
  function fast(record: Record<string, unknown>): Record<string, unknown> | undefined {
    if (!datetime) return undefined
    const { id, name, schemaVersion, occurredAt, source, payload } = record
    if (typeof id !== 'string' || id.length === 0 || id.length > maxIdLength) return undefined
    if (typeof name !== 'string' || !Object.hasOwn(definitions, name)) return undefined
    if (typeof schemaVersion !== 'number' || !Number.isInteger(schemaVersion) || !SUPPORTED_SCHEMA_VERSIONS.includes(schemaVersion)) return undefined
    if (typeof occurredAt !== 'string') return undefined
    let time = canonicalTime(occurredAt)
    // The canonical form has four-digit years in UTC already; any other form may leave them.
    const canonical = time === time
    if (!canonical) {
      if (!datetime.test(occurredAt)) return undefined
      time = Date.parse(occurredAt)
      if (!withinYears(time)) return undefined
    }
    if (typeof source !== 'string' || !sources.has(source)) return undefined
    const definition = definitions[name]!
    if (sourcePolicy === 'reject' && !definition.sources.includes(source as never)) return undefined
    if (!optionalRef(record.companyId) || !optionalRef(record.subjectId)) return undefined
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return undefined
    const prototype = Object.getPrototypeOf(payload)
    if (prototype !== Object.prototype && prototype !== null) return undefined
    let output: unknown = payload
    if (definition.payload) {
      const parsed = definition.payload.safeParse(payload)
      if (!parsed.success) return undefined
      output = parsed.data
    }
    fastTime = time
    // Nothing to normalise: the event is the object given (no copy per event on the hot path).
    fastUnchanged = canonical && output === payload
    if (fastUnchanged) return record
    const event = { ...record }
    if (!canonical) event.occurredAt = new Date(time).toISOString()
    if (output !== payload) event.payload = output
    return event
  }

  /** Depth (throws over the limit) and prototype keys of one element; the array is level 1. */
  function walk(input: unknown): string[] {
    const found: string[] = []
    const depth = inspectValue(input, limits.maxDepth - 1, '', found)
    if (depth > limits.maxDepth - 1) throw limitError('too_deep', 'maxDepth', limits.maxDepth, 'JSON nesting')
    return found
  }

  /** `found`: the prototype keys of `input` when already walked; undefined to walk here (or to skip, with `protoFree`). */
  function check(input: unknown, protoFree: boolean, found?: string[]): EventResult<unknown> & { unchanged?: boolean } {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      return { ok: false, errors: [{ path: '', message: `an event must be a JSON object, got ${describeValue(input)}` }] }
    }
    const id = readId(input)
    if (!protoFree || found) {
      found ??= walk(input)
      if (found.length > 0) {
        return {
          ok: false,
          id,
          errors: found.map((path) => ({ path, message: `${path}: prototype keys ("__proto__", "constructor.prototype") are not allowed` })),
        }
      }
    }
    const record = input as Record<string, unknown>
    const quick = fast(record)
    // A copy: these objects are the caller's (only a body parsed here keeps its own, see validateBatch).
    if (quick) return { ok: true, event: quick === record ? { ...record } : quick, unchanged: fastUnchanged }
    const version = record.schemaVersion
    if (typeof version === 'number' && Number.isInteger(version) && version > newest) {
      return {
        ok: false,
        id,
        errors: [{ path: 'schemaVersion', message: `schemaVersion: ${version} is newer than the newest supported version ${newest}` }],
      }
    }
    if (typeof version === 'number' && Number.isInteger(version) && version >= 1 && !SUPPORTED_SCHEMA_VERSIONS.includes(version)) {
      return {
        ok: false,
        id,
        errors: [{ path: 'schemaVersion', message: `schemaVersion: ${version} is not supported; supported versions are ${SUPPORTED_SCHEMA_VERSIONS.join(', ')}` }],
      }
    }
    const parsed = envelope.safeParse(input)
    const errors: FieldError[] = parsed.success ? [] : parsed.error.issues.map((issue) => formatIssue(issue, input))
    const name = record.name
    const definition = typeof name === 'string' && Object.hasOwn(definitions, name) ? definitions[name] : undefined
    if (typeof name === 'string' && name.length > 0 && !definition) {
      errors.push({ path: 'name', message: `name: unknown event name ${describeValue(name)}; registered names are ${names.join(', ')}` })
    }
    if (definition && sourcePolicy === 'reject' && typeof record.source === 'string' && !definition.sources.includes(record.source as never)
      && !errors.some((e) => e.path === 'source')) {
      errors.push({
        path: 'source',
        message: `source: ${name as string} is expected from ${definition.sources.join(', ')}, got ${describeValue(record.source)}`,
      })
    }
    let payload: unknown = record.payload
    if (definition?.payload && !errors.some((e) => e.path === 'payload')) {
      const result = definition.payload.safeParse(payload)
      if (result.success) payload = result.data
      else errors.push(...result.error.issues.map((issue) => formatIssue(issue, payload, ['payload'])))
    }
    if (errors.length > 0) return { ok: false, id, errors }
    const event = parsed.data as Record<string, unknown>
    event.occurredAt = new Date(record.occurredAt as string).toISOString()
    event.payload = payload
    return { ok: true, event }
  }

  function validateEvent(input: unknown): EventResult<unknown> {
    if (typeof input !== 'object' || input === null) return check(input, false)
    const found = walk(input)
    if (byteLength(input) > limits.maxEventBytes) {
      return { ok: false, id: readId(input), errors: [{ path: '', message: `event is over the maxEventBytes limit of ${limits.maxEventBytes}` }] }
    }
    return check(input, false, found)
  }

  /**
   * `received`: the body `input` was parsed from, whose facts spare a second walk. `mapping`: the
   * elements are of another format, mapped to envelopes once checked for size, depth and prototype
   * keys as sent; the batch is then never stored as received.
   */
  function validateBatch(input: unknown, received?: ReceivedBody, mapping?: BatchMapping): BatchResult<unknown> {
    if (!Array.isArray(input)) {
      throw new IngestError('not_an_array', `body must be a JSON array of events, got ${describeValue(input)}`)
    }
    if (input.length > limits.maxEvents) {
      throw limitError('too_many_events', 'maxEvents', limits.maxEvents, `a batch of ${input.length} events`)
    }
    const sizes = received?.sizes && received.sizes.length === input.length ? received.sizes : undefined
    // Every element is known to be within the limit: none needs measuring.
    const fits = sizes === undefined && received?.sizeBound !== undefined && received.sizeBound <= limits.maxEventBytes
    const protoFree = received?.protoFree === true
    const result: BatchResult<unknown> = { events: [], indexes: [], rejected: [], times: [] }
    let unchanged = (sizes !== undefined || fits) && typeof received?.text === 'string' && mapping === undefined
    for (let index = 0; index < input.length; index++) {
      let item = input[index]
      // Depth first: measuring a value nested too deeply would overflow the stack.
      let found = protoFree ? undefined : walk(item)
      const size = sizes ? sizes[index]! : fits ? 0 : byteLength(item)
      if (size > limits.maxEventBytes) {
        throw limitError('event_too_large', 'maxEventBytes', limits.maxEventBytes, `event ${index} (${size} bytes)`, { index, id: readId(item) })
      }
      if (mapping) {
        const mapped = mapElement(item, found, mapping)
        if (!mapped.ok) {
          const id = readId(item)
          result.rejected.push(id === undefined ? { index, errors: mapped.errors } : { index, id, errors: mapped.errors })
          continue
        }
        item = mapped.event
        // Walked as sent: the envelope holds the same values.
        found = []
      }
      // The common case first: a valid event of a body already scanned, with no result object.
      if (protoFree && typeof item === 'object' && item !== null && !Array.isArray(item)) {
        const quick = fast(item as Record<string, unknown>)
        if (quick) {
          if (!fastUnchanged) unchanged = false
          result.events.push(quick)
          result.indexes.push(index)
          result.times!.push(fastTime)
          continue
        }
      }
      const outcome = check(item, protoFree, found)
      if (!outcome.unchanged) unchanged = false
      if (outcome.ok) {
        result.events.push(outcome.event)
        result.indexes.push(index)
        result.times!.push(Number.NaN)
      } else {
        const errors = mapping ? outcome.errors.map((error) => mapping.error(error, item as Record<string, unknown>)) : outcome.errors
        result.rejected.push(outcome.id === undefined ? { index, errors } : { index, id: outcome.id, errors })
      }
    }
    if (unchanged && result.rejected.length === 0 && input.length > 0) result.received = received
    return result
  }

  /** One element of another format as an envelope: an object without prototype keys, mapped. */
  function mapElement(item: unknown, found: string[] | undefined, mapping: BatchMapping): ReturnType<BatchMapping['map']> {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      return { ok: false, errors: [{ path: '', message: `${mapping.element} must be a JSON object, got ${describeValue(item)}` }] }
    }
    if (found && found.length > 0) {
      return { ok: false, errors: found.map((path) => ({ path, message: `${path}: prototype keys ("__proto__", "constructor.prototype") are not allowed` })) }
    }
    return mapping.map(item as Record<string, unknown>)
  }

  return { validateBatch, validateEvent }
}
