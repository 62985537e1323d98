import { eachLimited, nextTurn } from '../base/each'
import { withTimeout } from '../base/timeout'
import { batchTime, hourBase, hourBucket, hoursKey, outboxKey, parseClaim } from '../storage/layout'
import type { LogContext } from './context'
import { toMs } from './query'
import type { PruneOptions } from './types'

/**
 * Deletes batches received before `olderThan` (keeping those still waiting to be forwarded),
 * touching only the hour buckets it needs, then the hours it emptied from the index, then dedupe
 * claims past the window.
 */
export async function pruneLog(context: LogContext, options: PruneOptions): Promise<{ batches: number; claims: number }> {
  try {
    return await prune(context, options)
  } finally {
    context.onPruned?.()
  }
}

async function prune(context: LogContext, { olderThan, signal }: PruneOptions): Promise<{ batches: number; claims: number }> {
  const cutoff = toMs(olderThan, 0)
  const cutoffHour = hourBucket(cutoff)
  const hours = await context.hours.read()
  let batches = 0
  const emptied: string[] = []
  for (const hour of hours.filter((h) => h <= cutoffHour)) {
    if (signal?.aborted) break
    const { removed, kept } = await pruneHour(context, hour, cutoff, signal)
    batches += removed
    if (kept === 0 && hour < cutoffHour) emptied.push(hour)
  }
  if (emptied.length > 0) await unindex(context, emptied)
  if (signal?.aborted) return { batches, claims: 0 }
  // Dedupe claims past the window go too (Redis expires them by itself).
  const claimCutoff = context.now() - context.windowMs
  const expired = await context.claims.expire((value) => parseClaim(value).at < claimCutoff, signal)
  // With them, the identities of processes that ended a window ago or more.
  if (context.owners && !signal?.aborted) await context.owners.sweep(claimCutoff, signal)
  return { batches, claims: expired }
}

/** Removes the batches of one hour bucket received before `cutoff`; counts those removed and kept. */
async function pruneHour(context: LogContext, hour: string, cutoff: number, signal: AbortSignal | undefined): Promise<{ removed: number; kept: number }> {
  const { storage, timeoutMs } = context
  const keys = await withTimeout(storage.getKeys(hourBase(context.prefix, hour)), timeoutMs, 'list')
  let removed = 0
  let kept = 0
  // A few at a time: one by one, each removal would wait for its own flush on some drivers.
  // 256 keys at a time, with a turn of the event loop between: storage that answers at once
  // (memory) would otherwise keep the whole prune in one turn, holding every request meanwhile.
  for (let start = 0; start < keys.length; start += 256) {
    if (start > 0) await nextTurn()
    await eachLimited(keys.slice(start, start + 256), 16, async (key) => {
      // A batch still waiting in the outbox is kept until it has been forwarded.
      const pending = !signal?.aborted && context.outbox && await withTimeout(storage.hasItem(outboxKey(context.prefix, key)), timeoutMs, 'read')
      if (!signal?.aborted && batchTime(key) < cutoff && !pending) {
        await withTimeout(storage.removeItem(key), timeoutMs, 'write')
        context.onRemoved?.(key)
        removed++
      } else kept++
    })
  }
  return { removed, kept }
}

/** Takes hours a prune emptied out of the index, if they are still empty. */
async function unindex(context: LogContext, emptied: readonly string[]): Promise<void> {
  const { storage, timeoutMs } = context
  await context.hours.update(async () => {
    // Still empty? An append that had the hour indexed already may have written into it since
    // it was listed (a batch given an old receive time).
    const empty: string[] = []
    for (const hour of emptied) {
      if ((await withTimeout(storage.getKeys(hourBase(context.prefix, hour)), timeoutMs, 'list')).length === 0) empty.push(hour)
    }
    if (empty.length === 0) return
    await withTimeout(storage.setItem(hoursKey(context.prefix), (await context.hours.read()).filter((h) => !empty.includes(h))), timeoutMs, 'write')
    context.hours.removed(empty)
  })
}
