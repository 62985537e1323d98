import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import type { EventResult, FieldError } from '../model/validate'

/** One golden fixture: an event as read from a `.json` file. */
export interface Fixture {
  /** The file, relative to the folder read. */
  file: string
  /** Its position when the file holds an array of events. */
  index?: number
  event: unknown
}

/** A fixture the model refuses, with the validator's errors. */
export interface FixtureFailure {
  file: string
  index?: number
  id?: string
  errors: FieldError[]
}

/**
 * Reads every `.json` file under `dir` (sub-folders included, in name order): each holds one event
 * or an array of events. A file that is not JSON throws, naming it.
 */
export async function readFixtures(dir: string): Promise<Fixture[]> {
  const files = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((entry) => entry.isFile() && entry.name.endsWith('.json'))
    .map((entry) => join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name))
    .sort()
  const fixtures: Fixture[] = []
  for (const path of files) {
    const file = relative(dir, path)
    let value: unknown
    try {
      value = JSON.parse(await readFile(path, 'utf8'))
    } catch (error) {
      throw new TypeError(`[event-ingest] fixture ${file} is not JSON: ${(error as Error).message}`)
    }
    if (Array.isArray(value)) value.forEach((event, index) => fixtures.push({ file, index, event }))
    else fixtures.push({ file, event: value })
  }
  return fixtures
}

/**
 * Validates each fixture against a model (anything with `validateEvent`, such as an
 * `EventModel`) and returns those it refuses; an empty list means all are valid.
 */
export function checkFixtures(model: { validateEvent(input: unknown): EventResult<unknown> }, fixtures: readonly Fixture[]): FixtureFailure[] {
  const failures: FixtureFailure[] = []
  for (const fixture of fixtures) {
    const result = model.validateEvent(fixture.event)
    if (result.ok) continue
    failures.push({
      file: fixture.file,
      ...(fixture.index !== undefined ? { index: fixture.index } : {}),
      ...(result.id !== undefined ? { id: result.id } : {}),
      errors: result.errors,
    })
  }
  return failures
}
