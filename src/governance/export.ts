import type { ModelDescription } from '../model/schema'

/**
 * The model as a file to commit: what `GET /events/schema` publishes, events sorted by name and
 * every object's keys sorted, two-space indented with a final newline, so the same model always
 * gives the same bytes and a change shows as a small diff.
 *
 * @example
 * import { writeFileSync } from 'node:fs'
 * import { createEventModel, exportModel } from 'event-ingest'
 *
 * writeFileSync('events.schema.json', exportModel(createEventModel().describe()))
 */
export function exportModel(description: ModelDescription): string {
  const events = [...description.events].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
  return `${JSON.stringify(sortKeys({ ...description, events }), null, 2)}\n`
}

/** A copy of a JSON value with every object's keys in code-unit order; arrays keep their order. */
export function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (typeof value !== 'object' || value === null) return value
  const sorted: Record<string, unknown> = {}
  for (const key of Object.keys(value).sort()) {
    const item = (value as Record<string, unknown>)[key]
    if (item !== undefined) sorted[key] = sortKeys(item)
  }
  return sorted
}
