import { normalizeKey } from 'unstorage'
import { describe, expect, it } from 'vitest'
import {
  acceptedCountKey, batchKey, batchTime, claimKey, claimValue, hourBucket, idKey, isNormalKey, madeBy, outboxKey, parseBatchKey, parseClaim, processKeyOf,
} from '../../src/storage/layout'

// The storage key shapes of src/storage/layout.ts, each written and parsed there only.

describe('storage key layout', () => {
  it('turns every id into its own key segment, safe on every driver', () => {
    const ids = ['a', 'A', 'a/b', 'a:b', 'a?b', 'a b', '..', 'é', 'e\u0301', '\ud800', '\udc00', 'x'.repeat(100), 'x'.repeat(101), 'y'.repeat(5000)]
    const keys = ids.map(idKey)
    expect(new Set(keys).size).toBe(ids.length)
    for (const key of keys) expect(key).toMatch(/^[xuhv][0-9a-f]+$/)
    // Short well-formed ids are hex of their UTF-8 bytes; long ones a SHA-256; lone surrogates use UTF-16.
    expect(idKey('ab')).toBe('x6162')
    expect(idKey('y'.repeat(5000))).toMatch(/^h[0-9a-f]{64}$/)
    expect(idKey('\ud800')).toMatch(/^u/)
    expect(claimKey('events:d', 'ab')).toBe('events:d:x6162')
  })

  it('names batches by hour, time, instance and log token, and parses them back', () => {
    const at = Date.UTC(2026, 11, 2, 7, 5, 9)
    const key = batchKey('events', at, 'api_1', 'a1b2c3', 42)
    expect(key).toBe(`events:b:2026120207:${at.toString(36).padStart(9, '0')}-api_1-a1b2c3${(42).toString(36).padStart(6, '0')}`)
    expect(parseBatchKey(key)).toEqual({ receivedAt: at, instance: 'api_1', sequence: `a1b2c3${'000016'}` })
    expect(batchTime(key)).toBe(at)
    expect(madeBy(key, 'api_1', 'a1b2c3')).toBe(true)
    expect(madeBy(key, 'api_1', 'ffffff')).toBe(false)
    expect(madeBy(key, 'api_2', 'a1b2c3')).toBe(false)
    expect(parseBatchKey('events:hours')).toBeNull()
    // Keys sort in acceptance order within an instance: the time is fixed-width.
    expect(batchKey('events', at, 'i', 't', 0) < batchKey('events', at + 1, 'i', 't', 0)).toBe(true)
  })

  it('derives the outbox entry, process identity and claim value of a batch', () => {
    const key = batchKey('events', Date.UTC(2026, 0, 1), 'api_1', 'a1b2c3', 0)
    const id = key.slice(key.lastIndexOf(':') + 1)
    expect(outboxKey('events', key)).toBe(`events:o:api_1:${id}`)
    expect(processKeyOf('events', key)).toBe('events:p:api_1-a1b2c3')
    expect(processKeyOf('events', 'events:hours')).toBeNull()
    expect(parseClaim(claimValue(key, 1234))).toEqual({ batch: key, at: 1234 })
    expect(parseClaim('no-time')).toEqual({ batch: 'no-time', at: 0 })
    expect(parseClaim('b|not-a-number')).toEqual({ batch: 'b', at: 0 })
  })

  it('buckets times by UTC hour, and counters by minute', () => {
    expect(hourBucket(Date.UTC(2026, 11, 31, 23, 59, 59, 999))).toBe('2026123123')
    expect(hourBucket(Date.UTC(2027, 0, 1, 0, 0, 0))).toBe('2027010100')
    expect(hourBucket(Date.UTC(2026, 11, 31, 23, 30))).toBe('2026123123')
    expect(acceptedCountKey('stats', 29_000_000)).toBe('stats:a:29000000')
  })

  it('tells exactly the keys unstorage\'s normalisation leaves as they are, from any start', () => {
    // Every key of up to four characters over the characters that matter, and real log keys.
    const alphabet = ['a', ':', '/', '\\', '?', '.']
    const keys: string[] = ['']
    for (let length = 1; length <= 4; length++) {
      for (let n = 0; n < alphabet.length ** length; n++) {
        let key = ''
        for (let k = 0, m = n; k < length; k++, m = Math.floor(m / alphabet.length)) key += alphabet[m % alphabet.length]
        keys.push(key)
      }
    }
    keys.push(batchKey('events', Date.UTC(2026, 11, 3, 10), 'web-1', 'a1b2c3', 7), outboxKey('events', batchKey('events', 1, 'web-1', 'a1b2c3', 7)))
    for (const key of keys) {
      expect(isNormalKey(key), JSON.stringify(key)).toBe(key !== '' && normalizeKey(key) === key)
      for (let start = 1; start < key.length; start++) {
        expect(isNormalKey(key, start), `${JSON.stringify(key)} from ${start}`).toBe(normalizeKey(key.slice(start)) === key.slice(start))
      }
    }
  })
})
