/**
 * The memory driver's dedupe claims: event id → claim value, in a `Map`, with the ids set under
 * each value kept beside it so a value's claims can be forgotten (a batch dropped by the memory
 * bound) or expired without a walk of every claim. V8 hashes the id strings with a random seed
 * per process, so ids chosen by whoever sends them cannot be made to collide.
 *
 * A value's list of ids may name ids since taken over or released: every removal through it checks
 * that the id still holds that value.
 */
export class ClaimMap {
  private readonly held = new Map<string, string>()
  // The ids set under each value (a batch claims in one call, and again after a wait or a take-over).
  private readonly byValue = new Map<string, string[]>()

  /** Claims held. */
  get size(): number {
    return this.held.size
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
    if (mine) this.note(value, mine)
    return result
  }

  /** Sets the claims of `ids` to `value`, whatever they held. */
  overwrite(ids: readonly string[], value: string): void {
    if (ids.length === 0) return
    for (const id of ids) this.held.set(id, value)
    this.note(value, ids.slice())
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

  /** Removes every claim holding `value`; returns how many. */
  forget(value: string): number {
    const ids = this.byValue.get(value)
    if (!ids) return 0
    this.byValue.delete(value)
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
   * the whole walk (claims, releases and lookups may run during a pause; a value added meanwhile
   * is looked at too). Stops between slices once `signal` is aborted.
   */
  async expire(isExpired: (value: string) => boolean, pause: () => Promise<void> = async () => {}, signal?: AbortSignal, sliceIds = 1 << 16): Promise<number> {
    let removed = 0
    let looked = 0
    for (const [value, ids] of this.byValue) {
      looked++
      if (isExpired(value)) {
        looked += ids.length
        removed += this.forget(value)
      }
      if (looked < sliceIds) continue
      looked = 0
      await pause()
      if (signal?.aborted) break
    }
    return removed
  }

  private note(value: string, ids: string[]): void {
    const list = this.byValue.get(value)
    if (list) for (const id of ids) list.push(id)
    else this.byValue.set(value, ids)
  }
}
