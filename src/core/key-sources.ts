import type { BatchResult, RejectedEvent } from '../model/validate'

// The sources a publishable key may send: applied to a validated batch, before anything is stored.

/** What a request's publishable key allows, as the core is told it (`IngestContext.key`). */
export interface KeyScope {
  /** The key's public id, named in each rejection. */
  readonly id: string
  /** The sources its events may have. */
  readonly sources: readonly string[]
}

/**
 * Moves each valid event whose `source` the key does not allow to the rejected ones, with its
 * batch index and an error naming `source`; the rest of the batch is unchanged. A batch with an
 * event moved is no longer stored as received (its body's bytes hold that event).
 */
export function restrictToKey<E>(batch: BatchResult<E>, key: KeyScope | undefined): BatchResult<E> {
  if (key === undefined) return batch
  let moved: RejectedEvent[] | undefined
  const kept: BatchResult<E> = { events: [], indexes: [], rejected: batch.rejected, times: batch.times && [] }
  for (let i = 0; i < batch.events.length; i++) {
    const event = batch.events[i] as { id?: unknown; source?: unknown }
    if (typeof event.source === 'string' && key.sources.includes(event.source)) {
      kept.events.push(batch.events[i]!)
      kept.indexes.push(batch.indexes[i]!)
      if (batch.times) kept.times!.push(batch.times[i]!)
      continue
    }
    const message = `source: publishable key "${key.id}" may send ${key.sources.join(', ')} events only, got ${JSON.stringify(event.source)}`
    ;(moved ??= []).push({ index: batch.indexes[i]!, ...(typeof event.id === 'string' ? { id: event.id } : {}), errors: [{ path: 'source', message }] })
  }
  if (moved === undefined) return batch
  kept.rejected = [...batch.rejected, ...moved].sort((a, b) => a.index - b.index)
  return kept
}
