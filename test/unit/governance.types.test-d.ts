import { describe, expectTypeOf, it } from 'vitest'
import {
  checkCompatibility,
  checkFixtures,
  createEventIngest,
  createEventModel,
  parseModelDescription,
  type BreakingRule,
  type CompatibilityReport,
  type CompatibilityRule,
  type CompatibleRule,
  type ModelChange,
} from 'event-ingest'

const model = createEventModel()

describe('the governance API, as types', () => {
  it('compares what describe(), schema() and a parsed export give, and returns a typed report', () => {
    const report = checkCompatibility(parseModelDescription('{}'), model.describe())
    expectTypeOf(report).toEqualTypeOf<CompatibilityReport>()
    expectTypeOf(checkCompatibility(createEventIngest().schema(), model.describe())).toEqualTypeOf<CompatibilityReport>()
    expectTypeOf(report.breaking).toEqualTypeOf<ModelChange[]>()
    expectTypeOf<ModelChange['kind']>().toEqualTypeOf<'breaking' | 'compatible'>()
    expectTypeOf<ModelChange['rule']>().toEqualTypeOf<CompatibilityRule>()
  })

  it('names every rule as a literal, breaking and compatible apart', () => {
    expectTypeOf<'field-made-required'>().toExtend<BreakingRule>()
    expectTypeOf<'field-added'>().toExtend<CompatibleRule>()
    expectTypeOf<'field-added'>().not.toExtend<BreakingRule>()
    expectTypeOf<'no-such-rule'>().not.toExtend<CompatibilityRule>()
  })

  it('checks fixtures with any model', () => {
    expectTypeOf(checkFixtures).toBeCallableWith(model, [])
    expectTypeOf(checkFixtures).toBeCallableWith(createEventModel({ events: { A: { sources: ['api'] } } }), [{ file: 'a.json', event: {} }])
  })
})
