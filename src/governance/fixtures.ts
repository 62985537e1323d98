import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import type { BatchResult, EventResult, FieldError } from '../model/validate'

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

/** What {@link checkFixtures} validates with: an `EventModel`, or anything with its validators. */
export interface FixtureValidator {
  validateEvent(input: unknown): EventResult<unknown>
  /** When present, each fixture is validated as a batch of one, so the size and depth limits apply too. */
  validateBatch?(input: unknown): BatchResult<unknown>
}

/**
 * Validates each fixture against a model and returns those it refuses; an empty list means all
 * are valid. With the model's `validateBatch`, each fixture goes through as a batch of one, so
 * `maxEventBytes` and `maxDepth` hold as on `POST /events/ingest`.
 *
 * @example
 * const failures = checkFixtures(model, await readFixtures('test/fixtures'))
 * for (const failure of failures) console.log(failure.file, failure.errors.map((error) => error.message))
 */
export function checkFixtures(model: FixtureValidator, fixtures: readonly Fixture[]): FixtureFailure[] {
  const failures: FixtureFailure[] = []
  for (const fixture of fixtures) {
    const errors = fixtureErrors(model, fixture.event)
    if (!errors) continue
    const id = (fixture.event as { id?: unknown } | null)?.id
    failures.push({
      file: fixture.file,
      ...(fixture.index !== undefined ? { index: fixture.index } : {}),
      ...(typeof id === 'string' ? { id } : {}),
      errors,
    })
  }
  return failures
}

function fixtureErrors(model: FixtureValidator, event: unknown): FieldError[] | undefined {
  if (!model.validateBatch) {
    const result = model.validateEvent(event)
    return result.ok ? undefined : result.errors
  }
  try {
    const result = model.validateBatch([event])
    return result.rejected[0]?.errors
  } catch (error) {
    // A limit refuses the batch as a whole: the fixture is over it.
    return [{ path: '', message: (error as Error).message.replace(/^\[event-ingest\] /, '') }]
  }
}
