import type { Storage } from 'unstorage'
import { withTimeout } from '../base/timeout'
import type { DriverMap } from '../storage/memory-store'

/** How long an instance trusts that its current hour is still in the index, in ms. */
const RECHECK_MS = 60_000

/**
 * The hour buckets that hold batches (`<prefix>:hours`), so listing and pruning visit only those.
 * Updates run one at a time in this process; a concurrent update from another instance can still
 * drop an entry, so an instance re-checks its hours at most once a minute, and the hour it leaves
 * when it moves on. On the memory driver (`local`) the index is read and written in the driver's
 * Map, synchronously, on every append: a check costs no I/O there, and appends never wait.
 */
export class HourIndex {
  private indexedHour = ''
  private indexedAt = 0
  private turn: Promise<unknown> = Promise.resolve()
  // The hour being indexed right now: appends that need the same hour share its update, so a slow
  // or failing hours write costs them one storage timeout together, not one each in turn.
  private indexing: { hour: string; done: Promise<void> } | undefined
  // What the Map held when last checked, and whether it listed that hour.
  private seen: { raw: unknown; hour: string } | undefined

  constructor(
    private readonly storage: Storage,
    private readonly key: string,
    private readonly timeoutMs: number,
    private readonly now: () => number,
    private readonly local?: DriverMap,
  ) {}

  async read(): Promise<string[]> {
    const value = await withTimeout(this.storage.getItem<string[]>(this.key), this.timeoutMs, 'read')
    return Array.isArray(value) ? value.map(String) : []
  }

  /** Runs `fn` after every update of the index before it, in this process. */
  update<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.turn.then(fn, fn)
    this.turn = run.catch(() => {})
    return run
  }

  /** Makes sure `hour` is in the index before a batch is written into it; undefined when it is (or was made so at once). */
  ensure(hour: string): Promise<void> | undefined {
    if (this.local) return this.ensureLocal(hour)
    if (hour === this.indexedHour && this.now() - this.indexedAt < RECHECK_MS) return undefined
    if (this.indexing?.hour === hour) return this.indexing.done
    const done = this.update(async () => {
      if (hour === this.indexedHour && this.now() - this.indexedAt < RECHECK_MS) return
      const hours = await this.read()
      const wanted = this.indexedHour && this.indexedHour !== hour ? [this.indexedHour, hour] : [hour]
      const missing = wanted.filter((h) => !hours.includes(h))
      if (missing.length > 0) await withTimeout(this.storage.setItem(this.key, [...hours, ...missing].sort()), this.timeoutMs, 'write')
      this.indexedHour = hour
      this.indexedAt = this.now()
    })
    const current = { hour, done }
    this.indexing = current
    const clear = () => {
      if (this.indexing === current) this.indexing = undefined
    }
    done.then(clear, clear)
    return done
  }

  /** The memory driver's index, checked and written in its Map (as `storage.setItem` would write it). */
  private ensureLocal(hour: string): undefined {
    const { map, relative } = this.local!
    const key = relative(this.key)
    const raw = map.get(key)
    if (this.seen && this.seen.raw === raw && this.seen.hour === hour) return undefined
    let hours: unknown
    try {
      hours = typeof raw === 'string' ? JSON.parse(raw) : raw
    } catch {}
    const list = Array.isArray(hours) ? hours.map(String) : []
    let text = raw
    if (!list.includes(hour)) map.set(key, (text = JSON.stringify([...list, hour].sort())))
    this.seen = { raw: text, hour }
    return undefined
  }

  /** Forgets what was indexed: the storage may have lost it (a take-over found batches gone, a failure). */
  forget(): void {
    this.indexedHour = ''
  }

  /** Hours a prune removed from the index: if the current one is among them, it is indexed again. */
  removed(hours: readonly string[]): void {
    if (hours.includes(this.indexedHour)) this.indexedHour = ''
  }
}
