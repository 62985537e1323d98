import { describe, expect, it } from 'vitest'
import { resolveOptions } from '../../src/index'
import { judgeSkew, parseSentAt } from '../../src/model/skew'

const settings = { toleranceMs: 60_000, maxMs: 31_622_400_000 }
const received = Date.UTC(2026, 11, 2, 12, 0, 0)
const iso = (ms: number) => new Date(ms).toISOString()

describe('clock skew', () => {
  it('reads a send time as ISO 8601 with Z or an offset, or epoch ms', () => {
    expect(parseSentAt('2026-12-02T12:00:00.000Z')).toBe(received)
    expect(parseSentAt('2026-12-02T13:00:00+01:00')).toBe(received)
    expect(parseSentAt('2026-12-02T12:00:00.123456Z')).toBe(received + 123)
    expect(parseSentAt(String(received))).toBe(received)
    for (const bad of ['yesterday', '2026-12-02', '2026-12-02T12:00:00', '1e12', '-5', '', '2026-13-02T12:00:00Z']) expect(parseSentAt(bad), bad).toBeNaN()
  })

  it.each([
    ['no send time', undefined, Number.NaN, { kind: 'none' }],
    ['an empty one', '', Number.NaN, { kind: 'none' }],
    ['a skew of exactly the tolerance: left alone', iso(received - 60_000), received - 61_000, { kind: 'within', skewMs: 60_000 }],
    ['one ms past it: corrected', iso(received - 60_001), received - 61_000, { kind: 'corrected', skewMs: 60_001 }],
    ['a clock ahead: corrected by a negative skew', iso(received + 3_600_000), received + 3_599_000, { kind: 'corrected', skewMs: -3_600_000 }],
    ['a skew of exactly maxMs: corrected', iso(received - 31_622_400_000), received - 31_622_400_000, { kind: 'corrected', skewMs: 31_622_400_000 }],
    ['one ms beyond maxMs: ignored', iso(received - 31_622_400_001), received - 31_622_400_001, { kind: 'ignored', reason: 'beyond maxMs' }],
    ['seconds sent as ms (1970): ignored', '1764676800', Number.NaN, { kind: 'ignored', reason: 'beyond maxMs' }],
    ['not a timestamp: ignored', 'soon', received, { kind: 'ignored', reason: 'not a timestamp' }],
    ['sent before an event occurred, past the tolerance: ignored', iso(received - 120_000), received - 59_999, { kind: 'ignored', reason: 'sent before an event occurred' }],
    ['sent before an event occurred, within the tolerance: judged as usual', iso(received - 120_000), received - 60_000 - 120_000 + 60_000, { kind: 'corrected', skewMs: 120_000 }],
  ])('%s', (_, sentAt, latest, expected) => {
    expect(judgeSkew(sentAt, received, latest, settings)).toEqual(expected)
  })

  it('is configured once, with each setting checked and false turning it off', () => {
    expect(resolveOptions({ env: {} }).clockSkew).toEqual({ toleranceMs: 60_000, maxMs: 31_622_400_000 })
    expect(resolveOptions({ env: {}, clockSkew: { toleranceMs: 0 } }).clockSkew).toEqual({ toleranceMs: 0, maxMs: 31_622_400_000 })
    expect(resolveOptions({ env: {}, clockSkew: false }).clockSkew).toBeUndefined()
    expect(() => resolveOptions({ env: {}, clockSkew: { toleranceMs: -1 } })).toThrow(/clockSkew\.toleranceMs must be a non-negative number, got -1/)
    expect(() => resolveOptions({ env: {}, clockSkew: { maxMs: 0 } })).toThrow(/clockSkew\.maxMs must be a positive number, got 0/)
    expect(() => resolveOptions({ env: {}, clockSkew: { toleranceMs: 10, maxMs: 5 } })).toThrow(/clockSkew\.maxMs must be at least clockSkew\.toleranceMs \(10\), got 5/)
    expect(() => resolveOptions({ env: {}, clockSkew: { tolerance: 5 } as never })).toThrow(/clockSkew/)
    expect(() => resolveOptions({ env: {}, clockSkew: 'on' as never })).toThrow(/clockSkew must be an object/)
  })
})
