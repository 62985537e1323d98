import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { checkCompatibility, createEventModel, exportModel, parseModelDescription, pickExamples, readFixtures, renderCatalog } from 'event-ingest'
import { projectRoot } from '../helpers/process'
import { fixtures } from '../helpers/fixtures'

/**
 * The project's own CI recipe: the canonical model's export is committed in
 * `docs/events.schema.json`; a change to the model must keep it compatible and update it
 * (`npm run schema:export`).
 */
const committed = readFileSync(`${projectRoot}docs/events.schema.json`, 'utf8')

describe('docs/events.schema.json, the committed export of the canonical model', () => {
  it('has no breaking change against the canonical model', () => {
    const report = checkCompatibility(parseModelDescription(committed, 'docs/events.schema.json'), createEventModel().describe())
    expect(report.breaking).toEqual([])
  })

  it('is current: exactly what `npm run schema:export` writes', () => {
    expect(committed, 'docs/events.schema.json is stale: run npm run schema:export and commit it').toBe(exportModel(createEventModel().describe()))
  })

  it('is what GET /events/schema publishes, in a stable order', () => {
    const published = createEventModel().describe()
    const saved = JSON.parse(committed)
    expect(saved.events.map((event: { name: string }) => event.name)).toEqual(published.events.map((event) => event.name).sort())
    expect(saved).toEqual({ ...JSON.parse(JSON.stringify(published)), events: saved.events })
  })

  it('keeps every golden fixture valid (the contract tests the export stands for)', () => {
    const model = createEventModel()
    expect(fixtures.filter(({ event }) => !model.validateEvent(event).ok).map(({ file }) => file)).toEqual([])
  })
})

describe('docs/events.md, the committed catalog of the canonical model', () => {
  it('is current: exactly what `npm run docs` writes', async () => {
    const model = createEventModel()
    const catalog = renderCatalog(model.describe(), { examples: pickExamples(await readFixtures(`${projectRoot}test/fixtures/v1`), model) })
    expect(readFileSync(`${projectRoot}docs/events.md`, 'utf8'), 'docs/events.md is stale: run npm run docs and commit it').toBe(catalog)
  })
})
