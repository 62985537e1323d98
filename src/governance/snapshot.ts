import { eventSources } from '../model/definitions'
import type { ModelDescription } from '../model/schema'

/**
 * Reads a saved export (or a `GET /events/schema` body) back into a model description, checking
 * the parts the compatibility check and the catalog read. A value that is not one throws a
 * `TypeError` naming `origin` and the first field that is wrong.
 *
 * @example
 * const saved = parseModelDescription(readFileSync('events.schema.json', 'utf8'), 'events.schema.json')
 */
export function parseModelDescription(input: string | unknown, origin = 'the export'): ModelDescription {
  let value: unknown = input
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input)
    } catch (error) {
      throw new TypeError(`[event-ingest] ${origin} is not JSON: ${(error as Error).message}`)
    }
  }
  const fail = (field: string, expected: string, got: unknown): never => {
    throw new TypeError(`[event-ingest] ${origin} is not an event model export: ${field} must be ${expected}, got ${preview(got)}`)
  }
  if (!isObject(value)) return fail('the document', 'an object (what GET /events/schema publishes)', value)
  if (!Array.isArray(value.events)) return fail('events', 'an array', value.events)
  const names = new Set<string>()
  value.events.forEach((event: unknown, index) => {
    const at = `events[${index}]`
    if (!isObject(event)) return fail(at, 'an object', event)
    if (typeof event.name !== 'string' || event.name === '') return fail(`${at}.name`, 'a non-empty string', event.name)
    if (names.has(event.name)) return fail(`${at}.name`, 'unique', event.name)
    names.add(event.name)
    if (!Array.isArray(event.sources) || !event.sources.every((source) => typeof source === 'string')) return fail(`${at}.sources`, 'an array of strings', event.sources)
    if (!isObject(event.payloadSchema) && typeof event.payloadSchema !== 'boolean') return fail(`${at}.payloadSchema`, 'a JSON Schema', event.payloadSchema)
    if (event.description !== undefined && typeof event.description !== 'string') return fail(`${at}.description`, 'a string', event.description)
    if (event.redact !== undefined && !(Array.isArray(event.redact) && event.redact.every((rule) => isObject(rule) && typeof rule.path === 'string' && typeof rule.action === 'string'))) {
      return fail(`${at}.redact`, 'an array of { path, action }', event.redact)
    }
  })
  if (!isObject(value.envelopeSchema)) return fail('envelopeSchema', 'a JSON Schema object', value.envelopeSchema)
  if (value.schemaVersion !== undefined && !Number.isInteger(value.schemaVersion)) return fail('schemaVersion', 'an integer', value.schemaVersion)
  if (value.supportedVersions !== undefined && !(Array.isArray(value.supportedVersions) && value.supportedVersions.every(Number.isInteger))) {
    return fail('supportedVersions', 'an array of integers', value.supportedVersions)
  }
  if (value.sourcePolicy !== undefined && value.sourcePolicy !== 'reject' && value.sourcePolicy !== 'accept') return fail('sourcePolicy', '"reject" or "accept"', value.sourcePolicy)
  if (value.limits !== undefined && !isObject(value.limits)) return fail('limits', 'an object', value.limits)
  return {
    schemaVersion: typeof value.schemaVersion === 'number' ? value.schemaVersion : 1,
    supportedVersions: (value.supportedVersions as number[] | undefined) ?? [typeof value.schemaVersion === 'number' ? value.schemaVersion : 1],
    sources: Array.isArray(value.sources) ? (value.sources as ModelDescription['sources']) : eventSources,
    ...value,
  } as unknown as ModelDescription
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function preview(value: unknown): string {
  if (value === undefined) return 'nothing'
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}
