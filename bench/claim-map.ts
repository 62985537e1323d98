/**
 * The memory driver's dedupe claims: event id → claim value, in a `Map`. What a claim call set is
 * its handle (`lastEntry`: the ids it claimed), kept by the caller to forget a batch dropped by
 * the memory bound, as the claim table's entry number is. V8 hashes the id strings with a random
 * seed per process, so ids chosen by whoever sends them cannot be made to collide.
 *
 * Every removal through a handle checks that the id still holds that value (it may have been taken
 * over or released since).
 */
export class ClaimMap {
  private readonly held = new Map<string, string>()
  // The ids the last claim or overwrite call set.
  private made: readonly string[] = []

  /** Claims held. */
  get size(): number {
    return this.held.size
  }

  /** The ids the last claim or overwrite call set: the handle {@link forget} takes. */
  get lastEntry(): readonly string[] {
    return this.made
  }

  /** For each id: `null` when it is now claimed with `value`, or the value already held. */
  claim(ids: readonly string[], value: string): (string | null)[] {
    const result: (string | null)[] = new Array(ids.length)
    let mine: string[] | undefined
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!
      const found = this.held.get(id)
      if (found !== undefined) {
        result[i] = found
        continue
      }
      this.held.set(id, value)
      ;(mine ??= []).push(id)
      result[i] = null
    }
    this.made = mine ?? []
    return result
  }

  /** Sets the claims of `ids` to `value`, whatever they held. */
  overwrite(ids: readonly string[], value: string): void {
    for (const id of ids) this.held.set(id, value)
    this.made = ids.slice()
  }

  /**
   * Compare-and-set: sets the claim of each id to `value` where it still holds `expected[i]`;
   * returns, per id, whether it did.
   */
  replace(ids: readonly string[], expected: readonly string[], value: string): boolean[] {
    const won = ids.map((id, i) => (this.held.get(id) ?? null) === expected[i])
    // An id repeated in the call is set once.
    this.overwrite([...new Set(ids.filter((_, i) => won[i]))], value)
    return won
  }

  /** Removes the claims of `ids` that still hold `value`. */
  release(ids: readonly string[], value: string): void {
    for (const id of ids) if (this.held.get(id) === value) this.held.delete(id)
  }

  /** Removes the claims of `ids` (a {@link lastEntry} of a call for `value`) still holding `value`; returns how many. */
  forget(ids: readonly string[], value: string): number {
    let removed = 0
    for (const id of ids) {
      if (this.held.get(id) === value) {
        this.held.delete(id)
        removed++
      }
    }
    return removed
  }

  read(id: string): string | null {
    return this.held.get(id) ?? null
  }

  /**
   * Removes every claim whose value `isExpired` says is over; resolves how many. About `sliceIds`
   * ids are looked at between two awaits of `pause`, so a big store does not hold the thread for
   * the whole walk (claims, releases and lookups may run during a pause). Stops between slices
   * once `signal` is aborted.
   */
  async expire(isExpired: (value: string) => boolean, pause: () => Promise<void> = async () => {}, signal?: AbortSignal, sliceIds = 1 << 16): Promise<number> {
    let removed = 0
    let looked = 0
    for (const [id, value] of this.held) {
      if (isExpired(value)) {
        this.held.delete(id)
        removed++
      }
      if (++looked < sliceIds) continue
      looked = 0
      await pause()
      if (signal?.aborted) break
    }
    return removed
  }
}
