import { describe, expect, it } from 'vitest'
import { backoffMs, classifyAttempt, parseRetryAfter, type AttemptContext, type AttemptOutcome, type SentPart, type Verdict } from '../../src/forward/classify'

const NOW = Date.UTC(2026, 11, 2, 12, 0, 0)

const oneBatch: SentPart[] = [{ events: [{ id: 'a' }, { id: 'b' }, { id: 'c' }] }]
const twoBatches: SentPart[] = [{ events: [{ id: 'a' }, { id: 'b' }] }, { events: [{ id: 'c' }, { id: 'd' }], positions: [1, 3] }]

function context(extra: Partial<AttemptContext> = {}): AttemptContext {
  // random() = 0.5: the jittered backoff is floor(0.5 × ceiling) + min(min, ceiling) / 2.
  return { attempt: 1, now: NOW, parts: oneBatch, minBackoffMs: 500, maxBackoffMs: 60_000, maxRetryAfterMs: 600_000, random: () => 0.5, ...extra }
}

const answer = (status: number, body = '', retryAfter: string | null = null): AttemptOutcome => ({ kind: 'answer', status, body, retryAfter })

describe('classifyAttempt: the verdict on each kind of outcome', () => {
  const rows: [string, AttemptOutcome, Partial<AttemptContext>, Verdict][] = [
    ['200 with an empty body: delivered', answer(200), {}, { kind: 'delivered' }],
    ['204: delivered', answer(204), {}, { kind: 'delivered' }],
    ['200 with an empty rejected list: delivered', answer(200, '{"accepted":3,"rejected":[]}'), {}, { kind: 'delivered' }],
    ['200 with a body that is not JSON: delivered', answer(200, 'ok "rejected"'), {}, { kind: 'delivered' }],
    [
      '200 listing a rejected event by index: partial, with its reasons',
      answer(200, '{"rejected":[{"index":1,"errors":[{"path":"payload","message":"bad"}]}]}'),
      {},
      { kind: 'partial', failure: 'partial', refused: new Map([[0, [{ index: 1, id: 'b', errors: [{ path: 'payload', message: 'bad' }] }]]]) },
    ],
    [
      '200 listing events of two batches: each placed in its batch, at its stored position',
      answer(200, '{"rejected":[{"index":3},{"index":0,"errors":["x"]}]}'),
      { parts: twoBatches },
      { kind: 'partial', failure: 'partial', refused: new Map([[1, [{ index: 3, id: 'd', errors: [] }]], [0, [{ index: 0, id: 'a', errors: ['x'] }]]]) },
    ],
    [
      '200 naming an event by id where the index is out of range',
      answer(200, '{"rejected":[{"index":99,"id":"c","errors":[]}]}'),
      {},
      { kind: 'partial', failure: 'partial', refused: new Map([[0, [{ index: 2, id: 'c', errors: [] }]]]) },
    ],
    ['200 naming neither a position nor an id it sent: delivered', answer(200, '{"rejected":[{"index":7},{"id":"zz"}]}'), {}, { kind: 'delivered' }],
    ['503 without Retry-After: retry after the backoff', answer(503), {}, { kind: 'retry', failure: '5xx', at: NOW + 750 }],
    ['500 on the third attempt: a longer backoff', answer(500), { attempt: 3 }, { kind: 'retry', failure: '5xx', at: NOW + 2250 }],
    ['503 with Retry-After: 7', answer(503, '', '7'), {}, { kind: 'retry', failure: '5xx', at: NOW + 7000 }],
    ['429 with Retry-After past maxRetryAfterMs: capped', answer(429, '', '86400'), {}, { kind: 'retry', failure: '429', at: NOW + 600_000 }],
    ['429 with an HTTP-date 30 s ahead', answer(429, '', 'Wed, 02 Dec 2026 12:00:30 GMT'), {}, { kind: 'retry', failure: '429', at: NOW + 30_000 }],
    ['429 with an HTTP-date in the past: at once', answer(429, '', 'Wed, 02 Dec 2026 11:00:00 GMT'), {}, { kind: 'retry', failure: '429', at: NOW }],
    ['429 with Retry-After "1.5" (no month name, not a date): the backoff', answer(429, '', '1.5'), {}, { kind: 'retry', failure: '429', at: NOW + 750 }],
    ['503 with Retry-After "-1": the backoff', answer(503, '', '-1'), {}, { kind: 'retry', failure: '5xx', at: NOW + 750 }],
    ['503 with Retry-After "2026-12-02" (an ISO date, not an HTTP-date): the backoff', answer(503, '', '2026-12-02'), {}, { kind: 'retry', failure: '5xx', at: NOW + 750 }],
    ['408: retry', answer(408), {}, { kind: 'retry', failure: '408', at: NOW + 750 }],
    ['425: retry', answer(425), {}, { kind: 'retry', failure: '425', at: NOW + 750 }],
    ['400 for one batch: dead letter', answer(400, '{"error":"x"}'), {}, { kind: 'dead', failure: 'rejected', status: 400 }],
    ['422 for one batch: dead letter', answer(422), {}, { kind: 'dead', failure: 'rejected', status: 422 }],
    ['400 for a combined request: split into single batches', answer(400), { parts: twoBatches }, { kind: 'split' }],
    ['a timeout: retry after the backoff', { kind: 'failure', failure: 'timeout' }, { attempt: 2 }, { kind: 'retry', failure: 'timeout', at: NOW + 1250 }],
    ['a network failure: retry after the backoff', { kind: 'failure', failure: 'network' }, {}, { kind: 'retry', failure: 'network', at: NOW + 750 }],
  ]

  it.each(rows)('%s', (_, outcome, extra, verdict) => {
    expect(classifyAttempt(outcome, context(extra))).toEqual(verdict)
  })
})

describe('parseRetryAfter', () => {
  const rows: [string | null, number | undefined][] = [
    [null, undefined],
    ['', undefined],
    ['0', 0],
    [' 120 ', 120_000],
    ['Wed, 02 Dec 2026 12:01:00 GMT', 60_000],
    ['Wednesday, 02-Dec-26 12:01:00 GMT', 60_000],
    ['Wed Dec  2 12:01:00 2026', 60_000],
    ['1.5', undefined],
    ['-1', undefined],
    ['12abc', undefined],
    ['2026-12-02T12:01:00Z', undefined],
    ['tomorrow', undefined],
    ['Wed, 02 Foo 2026 12:01:00 GMT', undefined],
  ]

  it.each(rows)('reads %j as %j', (value, ms) => {
    expect(parseRetryAfter(value, NOW)).toBe(ms)
  })
})

describe('backoffMs', () => {
  it('doubles per attempt from minBackoffMs, is capped at maxBackoffMs, and jitters below the ceiling', () => {
    const settings = { minBackoffMs: 100, maxBackoffMs: 1000 }
    expect(backoffMs({ ...settings, attempt: 1, random: () => 0 })).toBe(50)
    expect(backoffMs({ ...settings, attempt: 1, random: () => 0.999 })).toBe(199 + 50)
    expect(backoffMs({ ...settings, attempt: 3, random: () => 0.5 })).toBe(400 + 50)
    expect(backoffMs({ ...settings, attempt: 40, random: () => 0.5 })).toBe(500 + 50)
  })
})
