import { IngestError } from '../base/errors'
import { withTimeout } from '../base/timeout'
import { hourBucket } from '../storage/layout'
import type { Attempt, ClaimAppendContext } from './claim-attempt'
import { batchBusy } from './flights'
import { recordBytes, recordText } from './record'
import type { AppendResult, OutboxEntry } from './types'

/**
 * The write step of the claim protocol and what follows a failure: the record and outbox entry
 * written once the claims are held (T4), then, when something failed, the claims released where
 * nothing can have landed (T3, T5), or the batch handed to late settling (T6).
 */
export class ClaimWrite {
  constructor(private readonly context: ClaimAppendContext) {}

  /** Lets go of `ids` where they still hold `claim`, bounded by the storage timeout (the release itself may run on). */
  releaseClaims(ids: readonly string[], claim: string, batchKey: string): Promise<void> {
    const { claims, settling, timeoutMs } = this.context
    return withTimeout(settling.track(batchKey, claims.release(ids, claim)), timeoutMs, 'release')
  }

  /** Writes the record of the events not found duplicates, and the outbox entry (T4). */
  async write(attempt: Attempt): Promise<AppendResult> {
    const { storage, now, timeoutMs } = this.context
    const { events, receivedAt, raw, skewMs, batchKey, outboxKey, duplicateIndexes } = attempt
    duplicateIndexes.sort((a, b) => a - b)
    const storedPositions = duplicateIndexes.length === 0 ? undefined : events.map((_, p) => p).filter((p) => !duplicateIndexes.includes(p))
    if (storedPositions && storedPositions.length === 0) return { stored: 0, duplicateIndexes }
    const storedCount = storedPositions ? storedPositions.length : events.length
    await this.context.hours.ensure(hourBucket(receivedAt))
    // Another request may take these claims over once they are stale (STALE_AFTER_TIMEOUTS):
    // writing after timeoutMs could then put a second copy next to its own.
    if (now() - attempt.claimedAt > timeoutMs) {
      if (attempt.waited) throw batchBusy()
      throw new IngestError('storage_unavailable', `storage is too slow: claiming took over ${timeoutMs} ms`)
    }
    // The memory driver keeps the body's own bytes: off the JS heap, so stored events do not add
    // to the garbage collector's work, and with no copy when nothing else holds them.
    const bytes = this.context.keepsBytes ? recordBytes(receivedAt, raw, storedPositions, skewMs) : undefined
    const write = bytes
      ? storage.setItemRaw(batchKey, bytes)
      : storage.setItem(batchKey, recordText(receivedAt, this.context.instanceId, raw, events, storedPositions, skewMs))
    const writes = (attempt.writes = [write])
    if (outboxKey) {
      attempt.outboxEntry = { batch: batchKey, events: storedCount, receivedAt }
      writes.push(storage.setItem(outboxKey, JSON.stringify(attempt.outboxEntry)))
    }
    const result = (attempt.result = { stored: storedCount, duplicateIndexes, batchKey, outboxKey })
    // Writes to the memory driver are done when they return: no timer to race them against.
    const all: Promise<unknown> = writes.length === 1 ? write : Promise.all(writes)
    await (this.context.localWrites ? all : withTimeout(all, timeoutMs, 'write'))
    return result
  }

  /** After a failure: releases what is safe to release (T3, T5), or settles in the background (T6). */
  async fail(attempt: Attempt, error: unknown): Promise<AppendResult> {
    const { mine, claim, batchKey } = attempt
    if (attempt.claimsUnknown) {
      // A claim call failed part way: every id this batch may hold goes (a release removes
      // only claims that still name this batch), in the background, since the storage that
      // just failed may still be failing and the request answers now. On Redis it runs after
      // the claim's own commands, so it also clears claims that land late.
      void this.releaseClaims(attempt.ids, claim, batchKey).catch(() => {})
    } else if (mine.length > 0 && !attempt.writes) {
      // Nothing was sent: the claims go.
      await this.releaseClaims(mine, claim, batchKey).catch(() => {})
    } else if (mine.length > 0) {
      const stored = await this.settleWrites(attempt)
      if (stored) return stored
    }
    if (error instanceof IngestError) throw error
    // The storage may have lost data meanwhile (a Redis restarted empty): check the hour index again.
    this.context.hours.forget()
    throw new IngestError('storage_unavailable', `storage is unavailable: ${(error as Error).message}`, undefined, { cause: error })
  }

  /**
   * Once sent, the writes are waited for, and a record that landed is never removed: another
   * request that read it meanwhile answered "duplicate", and a removal after that would lose an
   * acknowledged event. Resolves the result when the batch turns out stored, whole.
   */
  private async settleWrites(attempt: Attempt): Promise<AppendResult | undefined> {
    const { settling, timeoutMs } = this.context
    const { batchKey, outboxKey, outboxEntry } = attempt
    const written = Promise.allSettled(attempt.writes!)
    const outcome = await withTimeout(written, timeoutMs, 'write').catch(() => undefined)
    const there = outcome && await settling.recordLanded(outcome, batchKey)
    // Written, only late: stored, and acknowledged as such.
    if (there && await this.outboxWritten(outcome, outboxKey, outboxEntry)) return attempt.result!
    if (there === false) {
      // Not stored: the claims go. A record landing after this makes at worst a second copy,
      // never a loss. The outbox entry stays: the forwarder drops an entry with no record
      // behind it, and forwards one whose record lands after all.
      await this.releaseClaims(attempt.mine, attempt.claim, batchKey).catch(() => {})
      if (outboxKey) this.context.onUnstored?.(outboxKey, outboxEntry!)
      return undefined
    }
    // Stored without its outbox entry, still unsettled, or not readable back: the claims stay (a
    // retry is told duplicates once the record is there) and the rest is settled in the background.
    const late = { result: { ...attempt.result!, batchKey }, events: attempt.events, receivedAt: attempt.receivedAt, outboxKey, entry: outboxEntry }
    settling.settleWrites(late, written, there)
    return undefined
  }

  /** Whether the outbox entry is written (tried again once, here, when its write failed). */
  private async outboxWritten(outcome: PromiseSettledResult<void>[], outboxKey?: string, entry?: OutboxEntry): Promise<boolean> {
    if (!outboxKey || outcome[1]!.status === 'fulfilled') return true
    return (await this.context.settling.writeOutbox(outboxKey, entry!)) === undefined
  }
}
