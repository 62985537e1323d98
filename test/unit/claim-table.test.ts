import { describe, expect, it } from 'vitest'
// The memory driver's claim table is internal, but its collision handling cannot be reached through
// the public API (it takes two ids with the same 32-bit hash), so it is tested here against a Map,
// with hashes weak enough to collide all the time.
import { ClaimTable, halfSipHash, keyedHash, type Hash } from '../../src/storage/claim-table'

/** A seeded PRNG (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The table's hash under a fixed key, so a failure can be replayed (tables get random keys). */
const hashId: Hash = (id) => halfSipHash(id, 0x01234567, 0x89abcdef)

/** A hash with only `bits` bits of information: ids collide constantly. */
const weak = (bits: number): Hash => (id) => hashId(id) & ((1 << bits) - 1)

/** The same operations on a Map: what the table must answer. */
class Reference {
  readonly map = new Map<string, string>()
  claim(ids: readonly string[], value: string) {
    return ids.map((id) => {
      const held = this.map.get(id)
      if (held !== undefined) return held
      this.map.set(id, value)
      return null
    })
  }
  overwrite(ids: readonly string[], value: string) {
    for (const id of ids) this.map.set(id, value)
  }
  release(ids: readonly string[], value: string) {
    for (const id of ids) if (this.map.get(id) === value) this.map.delete(id)
  }
  forget(value: string) {
    let removed = 0
    for (const [id, held] of this.map) if (held === value && this.map.delete(id)) removed++
    return removed
  }
  replace(ids: readonly string[], expected: readonly string[], value: string) {
    const won = ids.map((id, i) => this.map.get(id) === expected[i])
    ids.forEach((id, i) => won[i] && this.map.set(id, value))
    return won
  }
  expire(isExpired: (value: string) => boolean) {
    let removed = 0
    for (const [id, value] of this.map) {
      if (isExpired(value)) {
        this.map.delete(id)
        removed++
      }
    }
    return removed
  }
}

describe('memory claim table', () => {
  for (const [label, hash, pool] of [
    ['a hash of 3 bits (every lookup collides)', weak(3), 60],
    ['a hash of 10 bits (long probe runs, wrap-around)', weak(10), 3000],
    ['the real hash', hashId, 5000],
  ] as const) {
    it(`answers like a Map through claims, overwrites, take-overs (compare-and-set), releases, forgetting a value and expiry: ${label}`, async () => {
      const next = random(label.length * 7919)
      const table = new ClaimTable(hash, 8)
      const reference = new Reference()
      // Ids that differ in one character, in length, and outside ASCII, so a hash match must be
      // confirmed by the id itself.
      const idOf = (n: number) => (n % 3 === 0 ? `evt-${n}` : n % 3 === 1 ? `evt-${n}-é` : `${n}`)
      const values: string[] = []
      // The entries each value's calls made (lastEntry), as the memory store keeps them to forget a batch.
      const entriesOf = new Map<string, number[]>()
      const made = (value: string) => {
        if (table.lastEntry !== 0) entriesOf.set(value, [...(entriesOf.get(value) ?? []), table.lastEntry])
      }
      for (let step = 0; step < 4000; step++) {
        const ids = Array.from({ length: 1 + Math.floor(next() * 12) }, () => idOf(Math.floor(next() * pool)))
        const value = `batch-${step}|${step}`
        const op = next()
        if (op < 0.55) {
          expect(table.claim(ids, value), `claim at step ${step}`).toEqual(reference.claim(ids, value))
          made(value)
          values.push(value)
        } else if (op < 0.7) {
          table.overwrite(ids, value)
          made(value)
          reference.overwrite(ids, value)
          values.push(value)
        } else if (op < 0.8 && values.length > 0) {
          // Take-overs: most expect what the id holds, some an older value (another took it first).
          const expected = ids.map((id) => (next() < 0.7 ? reference.map.get(id) ?? values[0]! : values[Math.floor(next() * values.length)]!))
          expect(table.replace(ids, expected, value), `replace at step ${step}`).toEqual(reference.replace(ids, expected, value))
          made(value)
          values.push(value)
        } else if (op < 0.85 && values.length > 0) {
          // A batch dropped from memory: every claim holding its value goes, found from the entries
          // its calls made (some since emptied, and perhaps reused for another value).
          const held = values[Math.floor(next() * values.length)]!
          expect(table.forget(entriesOf.get(held) ?? [], held), `forget at step ${step}`).toBe(reference.forget(held))
        } else if (op < 0.95 && values.length > 0) {
          const held = values[Math.floor(next() * values.length)]!
          table.release(ids, held)
          reference.release(ids, held)
        } else {
          const before = step - Math.floor(next() * 400)
          const isExpired = (v: string) => Number(v.slice(v.indexOf('|') + 1)) < before
          // Walked a few slots at a time (nothing runs between the slices here).
          expect(await table.expire(isExpired, undefined, undefined, 7), `expire at step ${step}`).toBe(reference.expire(isExpired))
        }
        expect(table.size).toBe(reference.map.size)
      }
      for (let n = 0; n < pool; n++) expect(table.read(idOf(n)), idOf(n)).toBe(reference.map.get(idOf(n)) ?? null)
      expect(reference.map.size).toBeGreaterThan(0)
    })
  }

  for (const [label, hash] of [
    ['a hash of 10 bits', weak(10)],
    ['the real hash', hashId],
  ] as const) {
    it(`keeps every claim that is not over while claims and releases run between the slices of an expiry: ${label}`, async () => {
      const next = random(label.length * 104_729)
      const table = new ClaimTable(hash, 8)
      const reference = new Reference()
      for (let b = 0; b < 300; b++) {
        const ids = Array.from({ length: 1 + Math.floor(next() * 20) }, () => `old-${Math.floor(next() * 3000)}`)
        expect(table.claim(ids, `b${b}|${b}`)).toEqual(reference.claim(ids, `b${b}|${b}`))
      }
      const before = new Map(reference.map)
      const isExpired = (value: string) => Number(value.slice(value.indexOf('|') + 1)) < 150
      reference.expire(isExpired)
      // Between slices: claims of 3000 new ids (enough to make the table grow), and releases of some.
      let fresh = 0
      const values: string[] = []
      const pause = async () => {
        for (let k = 0; k < 2 && fresh < 3000; k++) {
          const value = `fresh${fresh}|1000000`
          const ids = Array.from({ length: 1 + Math.floor(next() * 10) }, () => `fresh-${fresh++}`)
          expect(table.claim(ids, value)).toEqual(reference.claim(ids, value))
          values.push(value)
          if (next() < 0.3) {
            const held = values[Math.floor(next() * values.length)]!
            const some = Array.from({ length: 10 }, () => `fresh-${Math.floor(next() * fresh)}`)
            table.release(some, held)
            reference.release(some, held)
          }
        }
      }
      const capacity = () => (table as unknown as { mask: number }).mask + 1
      const initial = capacity()
      await table.expire(isExpired, pause, undefined, 16)
      // The claims made between the slices made the table grow at least once.
      expect(capacity()).toBeGreaterThan(initial)
      for (const [id, value] of before) {
        const held = table.read(id)
        // Over: gone, or left for the next expiry by a claim moved behind the walk.
        if (isExpired(value)) expect(held === null || held === value, id).toBe(true)
        else expect(held, id).toBe(value)
      }
      for (let n = 0; n < fresh; n++) expect(table.read(`fresh-${n}`), `fresh-${n}`).toBe(reference.map.get(`fresh-${n}`) ?? null)
      // With nothing running between its slices, the next expiry leaves exactly what the Map has.
      await table.expire(isExpired)
      expect(table.size).toBe(reference.map.size)
      for (const id of before.keys()) expect(table.read(id), id).toBe(reference.map.get(id) ?? null)
    })
  }

  it('stops between slices once its signal is aborted', async () => {
    const table = new ClaimTable(hashId, 8)
    for (let b = 0; b < 100; b++) table.claim(Array.from({ length: 50 }, (_, i) => `s-${b}-${i}`), `v${b}`)
    const controller = new AbortController()
    let pauses = 0
    const removed = await table.expire(() => true, async () => {
      if (++pauses === 2) controller.abort()
    }, controller.signal, 256)
    expect(pauses).toBe(2)
    expect(removed).toBeGreaterThan(0)
    expect(table.size).toBe(5000 - removed)
    expect(await table.expire(() => true)).toBe(5000 - removed)
    expect(table.size).toBe(0)
  })

  it('grows past a million claims and keeps every one', async () => {
    const table = new ClaimTable()
    const batch = (b: number) => Array.from({ length: 50 }, (_, i) => `evt_${b}_${i}`)
    for (let b = 0; b < 20_000; b++) expect(table.claim(batch(b), `v${b}`).every((held) => held === null)).toBe(true)
    expect(table.size).toBe(1_000_000)
    for (const b of [0, 7_777, 19_999]) expect(table.claim(batch(b), 'again')).toEqual(batch(b).map(() => `v${b}`))
    expect(await table.expire((value) => value !== 'v3')).toBe(999_950)
    expect(table.read('evt_3_49')).toBe('v3')
    expect(table.read('evt_4_0')).toBeNull()
  })

  it('hashes with HalfSipHash, matching the reference vectors, under a random key per table', () => {
    // The reference's HalfSipHash-2-4 32-bit vectors, key 00..07, input 00 01 02 ... of each length;
    // a string of n code units is 2n bytes of UTF-16LE, so even lengths are reachable.
    const vectors: Record<number, number> = { 0: 0x5b9f35a9, 2: 0x03a662fa, 4: 0x89466e2a, 6: 0x23fc6358, 8: 0x8f84b8d0, 10: 0x3479b094, 12: 0x2f87f057, 14: 0x7cf8ffd6, 16: 0x84acb5d9, 18: 0x9b8d5b46, 20: 0x45104de3, 22: 0xfe67f370 }
    for (const [length, expected] of Object.entries(vectors)) {
      const units = Array.from({ length: Number(length) / 2 }, (_, j) => (2 * j) | ((2 * j + 1) << 8))
      expect(halfSipHash(String.fromCharCode(...units), 0x03020100, 0x07060504, 2, 4) >>> 0, `${length} bytes`).toBe(expected)
    }
    // An odd number of code units ends in a half word: it still counts, and so does its length.
    const key = [0x9e3779b9, 0x7f4a7c15] as const
    const odd = ['a', 'ab', 'abc', 'abcd', 'abcde', 'b', 'a\u0000', '\u0000a', '\u0000', '\u0000\u0000'].map((id) => halfSipHash(id, ...key))
    expect(new Set(odd).size).toBe(odd.length)
    // Every table its own random key: one id hashes differently in each.
    const hashes = Array.from({ length: 8 }, () => keyedHash()('evt_1'))
    expect(new Set(hashes).size).toBe(8)
  })
})
