/**
 * The memory driver's dedupe claims: event id → claim value, as an open-addressing hash table in
 * one typed array. A `Map` keyed by id keeps a heap string and a hash-table slot per id that every
 * major GC walks; this table holds three integers per id (a 32-bit hash, the claim's entry and the
 * id's position in it) that the GC never looks into. The ids themselves are kept once per claim
 * call, concatenated into one string, to confirm every hash match exactly: two ids with the same
 * hash are still two ids.
 */

/** One claim call: its value, its ids end to end, the hash and end of each id, and how many slots point here. */
interface Entry {
  value: string
  ids: string
  /**
   * For `n` ids: the hash of each at `0 … n - 1` (its slot is found again without the id's text,
   * see `forget`), then where each ends in `ids` at `n … 2n - 1`. One array, not two: an entry
   * lives as long as its claims, and every object it holds is one more for the GC to copy.
   */
  meta: Int32Array
  live: number
}

/** A 32-bit hash of a string. */
export type Hash = (id: string) => number

/**
 * HalfSipHash (Aumasson and Bernstein's SipHash on 32-bit words) of a string's UTF-16LE bytes under
 * the 64-bit key `k0`, `k1`, with `c` rounds per word and `d` to finish: a keyed hash whose
 * collisions cannot be found without the key. With 2 and 4 rounds it gives the reference's
 * HalfSipHash-2-4 32-bit output; hash tables use 1 and 3 (as Linux's hsiphash does).
 */
export function halfSipHash(id: string, k0: number, k1: number, c = 1, d = 3): number {
  let v0 = k0 | 0
  let v1 = k1 | 0
  let v2 = 0x6c796765 ^ k0
  let v3 = 0x74656462 ^ k1
  const n = id.length
  const words = n >>> 1
  // Two code units make one little-endian 32-bit word; the last word holds the byte length's low
  // byte on top and an odd code unit's two bytes at the bottom. Step `words + 1` finishes. (The
  // round is written out once, inline: a shared closure would keep v0..v3 in a heap context.)
  for (let step = 0; step <= words + 1; step++) {
    const finishing = step > words
    const m = finishing ? 0 : step < words ? id.charCodeAt(2 * step) | (id.charCodeAt(2 * step + 1) << 16) : ((2 * n) << 24) | (n & 1 ? id.charCodeAt(n - 1) : 0)
    if (finishing) v2 ^= 0xff
    else v3 ^= m
    for (let r = finishing ? d : c; r > 0; r--) {
      v0 = (v0 + v1) | 0
      v1 = ((v1 << 5) | (v1 >>> 27)) ^ v0
      v0 = (v0 << 16) | (v0 >>> 16)
      v2 = (v2 + v3) | 0
      v3 = ((v3 << 8) | (v3 >>> 24)) ^ v2
      v0 = (v0 + v3) | 0
      v3 = ((v3 << 7) | (v3 >>> 25)) ^ v0
      v2 = (v2 + v1) | 0
      v1 = ((v1 << 13) | (v1 >>> 19)) ^ v2
      v2 = (v2 << 16) | (v2 >>> 16)
    }
    v0 ^= m
  }
  return v1 ^ v3
}

/**
 * A HalfSipHash-1-3 under a random key of its own: ids sent to a public endpoint are chosen by
 * whoever sends them, and with a hash they could compute, many ids with one hash would make every
 * claim walk one long probe run (hash flooding). Under a key nobody outside the process knows,
 * they cannot be chosen so.
 */
export function keyedHash(): Hash {
  const [k0, k1] = globalThis.crypto.getRandomValues(new Uint32Array(2))
  return (id) => halfSipHash(id, k0!, k1!)
}

// Slot layout: [hash, entry ref (0: empty), index of the id in its entry].
const WIDTH = 3

/** Event id → claim value, for one memory storage. */
export class ClaimTable {
  private slots: Int32Array
  private mask: number
  private count = 0
  private readonly entries: (Entry | undefined)[] = [undefined]
  private readonly freeRefs: number[] = []
  // The entry the last claim or overwrite call made, 0 when it made none: see `lastEntry`.
  private made = 0
  // The hash of the id `find` looked up last, and the empty slot its search ended at, for `insert`.
  private lastHash = 0
  private lastFree = 0
  // What `hashAll` read, kept so the reads are not optimised away.
  private touched = 0

  constructor(private readonly hash: Hash = keyedHash(), capacity = 1 << 14) {
    this.slots = new Int32Array(capacity * WIDTH)
    this.mask = capacity - 1
  }

  /** Claims held. */
  get size(): number {
    return this.count
  }

  /**
   * The entry the last {@link claim}, {@link overwrite} or {@link replace} made for its value (0
   * when it claimed nothing): a caller that will {@link forget} the value keeps it. The table
   * keeps no index from values to entries, which every claim would pay for.
   */
  get lastEntry(): number {
    return this.made
  }

  /** For each id: `null` when it is now claimed with `value`, or the value already held. */
  claim(ids: readonly string[], value: string): (string | null)[] {
    this.made = 0
    const result: (string | null)[] = new Array(ids.length)
    const hashes = this.hashAll(ids)
    let ref = 0
    for (let i = 0; i < ids.length; i++) {
      const slot = this.findHashed(ids[i]!, hashes[i]!)
      if (slot >= 0) {
        result[i] = this.entries[this.slots[slot + 1]!]!.value
        continue
      }
      if (ref === 0) ref = this.addEntry(ids, value, hashes)
      this.insert(ref, i)
      result[i] = null
    }
    return result
  }

  /** Sets the claims of `ids` to `value`, whatever they held. */
  overwrite(ids: readonly string[], value: string): void {
    this.made = 0
    if (ids.length === 0) return
    const ref = this.addEntry(ids, value)
    const entry = this.entries[ref]!
    for (let i = 0; i < ids.length; i++) {
      const slot = this.find(ids[i]!)
      if (slot < 0) {
        this.insert(ref, i)
        continue
      }
      const held = this.slots[slot + 1]!
      if (held !== ref) {
        this.release1(held)
        entry.live++
        this.slots[slot + 1] = ref
      }
      this.slots[slot + 2] = i
    }
  }

  /**
   * Compare-and-set: sets the claim of each id to `value` where it still holds `expected[i]`;
   * returns, per id, whether it did.
   */
  replace(ids: readonly string[], expected: readonly string[], value: string): boolean[] {
    const won = ids.map((id, i) => this.read(id) === expected[i])
    // An id repeated in the call is set once.
    const chosen = [...new Set(ids.filter((_, i) => won[i]))]
    this.overwrite(chosen, value)
    return won
  }

  /** Removes the claims of `ids` that still hold `value`. */
  release(ids: readonly string[], value: string): void {
    for (const id of ids) {
      const slot = this.find(id)
      if (slot >= 0 && this.entries[this.slots[slot + 1]!]!.value === value) this.remove(slot)
    }
  }

  /**
   * Removes the claims still holding `value` of the entries `refs` (each a {@link lastEntry} of a
   * call for `value`); returns how many. An entry whose claims all went meanwhile may have been
   * reused for another value: it is left alone.
   */
  forget(refs: number | readonly number[], value: string): number {
    let removed = 0
    for (const ref of typeof refs === 'number' ? [refs] : refs) {
      const entry = this.entries[ref]
      if (entry === undefined || entry.value !== value) continue
      const meta = entry.meta
      const count = meta.length >> 1
      for (let i = 0; i < count && this.entries[ref] === entry; i++) {
        const slot = this.slotOf(ref, i, meta[i]!)
        if (slot >= 0) {
          this.remove(slot)
          removed++
        }
      }
    }
    return removed
  }

  /** The slot of the id at `index` of entry `ref` (whose hash is `hash`), or -1: no text compared. */
  private slotOf(ref: number, index: number, hash: number): number {
    const slots = this.slots
    const mask = this.mask
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const slot = i * WIDTH
      const held = slots[slot + 1]!
      if (held === 0) return -1
      if (held === ref && slots[slot + 2] === index) return slot
    }
  }

  read(id: string): string | null {
    const slot = this.find(id)
    return slot < 0 ? null : this.entries[this.slots[slot + 1]!]!.value
  }

  /**
   * Removes every claim whose value `isExpired` says is over; resolves how many. The table is
   * walked `sliceSlots` slots at a time with `pause` awaited between slices, so a big table does
   * not hold the thread for the whole walk: claims, releases and lookups may run during a pause (a
   * claim that one of them, or a growth of the table, moves behind the walk stays until the next
   * call). Stops between slices once `signal` is aborted. Shrinks the table when few claims are
   * left.
   */
  async expire(isExpired: (value: string) => boolean, pause: () => Promise<void> = async () => {}, signal?: AbortSignal, sliceSlots = 1 << 16): Promise<number> {
    const over = new Set<Entry>()
    for (const entry of this.entries) if (entry && isExpired(entry.value)) over.add(entry)
    if (over.size === 0) return 0
    let removed = 0
    let slots = this.slots
    let position = 0
    for (;;) {
      const end = Math.min(position + sliceSlots, this.mask + 1)
      while (position < end) {
        const slot = position * WIDTH
        const ref = slots[slot + 1]!
        // Removal moves a later claim of the run into this slot: it is looked at too.
        if (ref !== 0 && over.has(this.entries[ref]!)) {
          this.remove(slot)
          removed++
        } else position++
      }
      if (position > this.mask) break
      await pause()
      if (signal?.aborted) break
      // The table grew meanwhile: the walk goes on from the same place in the new one (starting
      // over could chase a table that grows as fast as it is walked); claims that moved behind it
      // stay until the next call.
      slots = this.slots
    }
    let capacity = 1 << 14
    while (capacity < this.count * 2) capacity *= 2
    if (capacity * 4 <= this.mask + 1) this.rebuild(capacity)
    return removed
  }

  /** Moves every claim to a fresh table of `capacity` slots. */
  private rebuild(capacity: number): void {
    const old = this.slots
    this.allocate(capacity)
    for (let slot = 0; slot < old.length; slot += WIDTH) {
      if (old[slot + 1] !== 0) this.place(old[slot]!, old[slot + 1]!, old[slot + 2]!)
    }
  }

  /**
   * The hashes of `ids`, with the home slot of each read once, all before any lookup: those reads
   * do not wait on one another, so the CPU overlaps their cache and TLB misses, where lookups one
   * by one would wait out each miss in turn (the table is far larger than the caches).
   */
  private hashAll(ids: readonly string[]): Int32Array {
    // Sized for an entry's meta (see Entry), whose first half the hashes are.
    const hashes = new Int32Array(ids.length * 2)
    for (let i = 0; i < ids.length; i++) hashes[i] = this.hash(ids[i]!)
    const slots = this.slots
    const mask = this.mask
    let touched = 0
    for (let i = 0; i < ids.length; i++) touched |= slots[(hashes[i]! & mask) * WIDTH + 1]!
    this.touched = touched
    return hashes
  }

  /** The slot holding `id`, or -1. The hash picks the slot; the id kept in the entry confirms it. */
  private find(id: string): number {
    return this.findHashed(id, this.hash(id))
  }

  private findHashed(id: string, hash: number): number {
    this.lastHash = hash
    const slots = this.slots
    const mask = this.mask
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const slot = i * WIDTH
      const ref = slots[slot + 1]!
      if (ref === 0) {
        this.lastFree = i
        return -1
      }
      if (slots[slot] === hash && this.holds(ref, slots[slot + 2]!, id)) return slot
    }
  }

  /** Whether the id at `index` of entry `ref` is `id`. */
  private holds(ref: number, index: number, id: string): boolean {
    const entry = this.entries[ref]!
    const meta = entry.meta
    const ends = meta.length >> 1
    const start = index === 0 ? 0 : meta[ends + index - 1]!
    return meta[ends + index]! - start === id.length && entry.ids.startsWith(id, start)
  }

  /**
   * Adds the id at `index` of entry `ref`, which `find` has just failed to find. The table doubles
   * once three quarters full: fresh memory costs a page fault per 4 KiB touched, which on some
   * machines costs more than the longer probe runs of a fuller table (claiming 1.5 million ids in
   * batches of 50 took 30 µs per batch and 1.3 faults growing at half full, 23 µs and 0.8 here).
   */
  private insert(ref: number, index: number): void {
    if ((this.count + 1) * 4 > (this.mask + 1) * 3) {
      this.grow()
      this.place(this.lastHash, ref, index)
    } else {
      const slot = this.lastFree * WIDTH
      this.slots[slot] = this.lastHash
      this.slots[slot + 1] = ref
      this.slots[slot + 2] = index
    }
    this.entries[ref]!.live++
    this.count++
  }

  private place(hash: number, ref: number, index: number): void {
    const slots = this.slots
    const mask = this.mask
    let i = hash & mask
    while (slots[i * WIDTH + 1] !== 0) i = (i + 1) & mask
    const slot = i * WIDTH
    slots[slot] = hash
    slots[slot + 1] = ref
    slots[slot + 2] = index
  }

  /** Linear probing's deletion: later slots of the same run move back so no lookup stops early. */
  private remove(slot: number): void {
    this.release1(this.slots[slot + 1]!)
    this.count--
    const slots = this.slots
    const mask = this.mask
    let hole = slot / WIDTH
    let i = hole
    for (;;) {
      i = (i + 1) & mask
      const at = i * WIDTH
      if (slots[at + 1] === 0) break
      const home = slots[at]! & mask
      // It stays when its home lies cyclically in (hole, i].
      const stays = hole <= i ? hole < home && home <= i : hole < home || home <= i
      if (stays) continue
      slots.copyWithin(hole * WIDTH, at, at + WIDTH)
      hole = i
    }
    slots.fill(0, hole * WIDTH, hole * WIDTH + WIDTH)
  }

  private grow(): void {
    this.rebuild((this.mask + 1) * 2)
  }

  private allocate(capacity: number): void {
    this.slots = new Int32Array(capacity * WIDTH)
    this.mask = capacity - 1
  }

  /** A new entry for `ids`; `meta` has their hashes (from hashAll) when the caller made them. */
  private addEntry(ids: readonly string[], value: string, meta?: Int32Array): number {
    const n = ids.length
    if (!meta) {
      meta = new Int32Array(n * 2)
      for (let i = 0; i < n; i++) meta[i] = this.hash(ids[i]!)
    }
    let at = 0
    for (let i = 0; i < n; i++) meta[n + i] = at += ids[i]!.length
    const ref = this.freeRefs.pop() ?? this.entries.length
    this.entries[ref] = { value, ids: n === 1 ? ids[0]! : ids.join(''), meta, live: 0 }
    this.made = ref
    return ref
  }

  /** One slot fewer points at entry `ref`; the entry goes with its last slot. */
  private release1(ref: number): void {
    const entry = this.entries[ref]!
    if (--entry.live === 0) {
      this.entries[ref] = undefined
      this.freeRefs.push(ref)
    }
  }
}
