import type { Storage } from 'unstorage'
import { withTimeout } from '../base/timeout'
import { processBase, processKeyOf } from '../storage/layout'
import { isGone, parseIdentity, processIdentity } from '../storage/process-identity'

/**
 * The processes behind claims, on storage whose writes end with the process that makes them (the
 * fs driver: a write is a system call of that process, so once it has ended nothing it sent can
 * still land). Each log writes its process's identity (see ProcessIdentity) before its first
 * claim; a log that finds a young claim of another log whose process has certainly ended knows
 * that its batch will never be written, and takes the claim over at once instead of waiting
 * until it is stale (T14 in docs/design/dedupe.md). Whenever that cannot be known (another host,
 * another container, an identity not written, a read that fails), the claim is judged by its age
 * as before.
 */
export class ProcessOwners {
  private announced: Promise<void> | undefined
  private readonly key: string | null

  constructor(
    private readonly storage: Storage,
    private readonly prefix: string,
    /** Any batch key of this log: it names the log's process key. */
    sampleBatchKey: string,
    private readonly timeoutMs: number,
    private readonly now: () => number,
  ) {
    this.key = processKeyOf(prefix, sampleBatchKey)
  }

  /**
   * Writes this process's identity, once; every claim waits for it. A write that fails is tried
   * again by the next batch (a claim is never made before the identity is written: a reader must
   * not find, under this log's key, nothing or another process's identity).
   */
  announce(): Promise<void> | undefined {
    const identity = processIdentity()
    if (!identity || !this.key) return undefined
    if (!this.announced) {
      const key = this.key
      this.announced = withTimeout(this.storage.setItem(key, JSON.stringify({ ...identity, announcedAt: this.now() })), this.timeoutMs, 'write')
      this.announced.catch(() => {
        this.announced = undefined
      })
    }
    return this.announced
  }

  /** Whether the process of the log that made `batch` has certainly ended. */
  async gone(batch: string): Promise<boolean> {
    const key = processKeyOf(this.prefix, batch)
    if (!key || key === this.key) return false
    const value = await withTimeout(this.storage.getItem(key), this.timeoutMs, 'read').catch(() => undefined)
    const identity = parseIdentity(value)
    return identity !== undefined && isGone(identity)
  }

  /**
   * Removes the identities of processes that have ended and were announced before `cutoff`: their
   * claims are stale by now, or judged by their age if not. Resolves how many were removed.
   */
  async sweep(cutoff: number, signal?: AbortSignal): Promise<number> {
    const keys = await withTimeout(this.storage.getKeys(processBase(this.prefix)), this.timeoutMs, 'list')
    let removed = 0
    for (const key of keys) {
      if (signal?.aborted) break
      const value = await withTimeout(this.storage.getItem(key), this.timeoutMs, 'read').catch(() => undefined)
      const identity = parseIdentity(value)
      const announcedAt = (value as { announcedAt?: unknown } | null)?.announcedAt
      if (!identity || typeof announcedAt !== 'number' || announcedAt >= cutoff || !isGone(identity)) continue
      await withTimeout(this.storage.removeItem(key), this.timeoutMs, 'write')
      removed++
    }
    return removed
  }
}
