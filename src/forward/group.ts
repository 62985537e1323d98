import { createHash } from 'node:crypto'
import type { Storage } from 'unstorage'
import { parseRecord } from '../log/event-log'
import type { SentPart } from './classify'
import type { Leases } from './leases'
import type { OutboxQueue, Pending } from './queue'

/**
 * Grouping: the batches at the head of the queue that one sink request carries, each under this
 * instance's lease, with the events read from their stored records.
 */

/** One sink request: its batches, its body, and what each batch sent. */
export interface Group {
  entries: Pending[]
  body: string
  events: number
  /** The request's idempotency key: the same batches give the same key on every retry. */
  key: string
  /** What each entry sent, parallel to `entries`, in request order. */
  parts: SentPart[]
}

/** What building a group reads and writes. */
export interface GroupContext {
  storage: Storage
  queue: OutboxQueue
  leases: Leases
  io: <T>(step: Promise<T>, what: string) => Promise<T>
  maxEvents: number
  maxBytes: number
  /** An entry with no record this long after its receipt is dropped (its write failed before it was acknowledged). */
  orphanAfterMs: number
}

/** An entry ready to be sent: the events chosen and their JSON, without the brackets. */
interface Ready {
  part: SentPart
  json: string
}

/** Longest wait before an entry without a record is looked at again (ms). */
const RECHECK_MS = 5000

/**
 * Builds the next group from the head of the queue: at most `maxEvents` events and `maxBytes`
 * bytes (always at least one batch), or a single batch with `single`. Undefined when nothing at the
 * head is deliverable now (leased elsewhere, no record yet: those entries get a `notBefore`).
 */
export async function buildGroup(context: GroupContext, single: boolean): Promise<Group | undefined> {
  const { queue, maxEvents, maxBytes } = context
  const entries: Pending[] = []
  // Each batch is serialised once; the request body is the batches' events joined.
  const json: string[] = []
  const parts: SentPart[] = []
  let events = 0
  let bytes = 2
  // Every batch holds at least one event, so a group never takes more than maxEvents entries.
  for (const pending of queue.candidates(Date.now(), maxEvents)) {
    const first = entries.length === 0
    // A replay's entry travels alone: its idempotency key is then its own, whatever is queued beside it.
    if (!first && (single || pending.replay || entries[0]!.replay || events + pending.events > maxEvents)) break
    const ready = await prepare(context, pending)
    if (ready === 'skip') continue
    if ('retryAt' in ready) {
      // Passed over while it is leased elsewhere, when nothing was taken before it; behind a taken
      // entry, it ends the group (and is looked at first next time).
      if (!first) break
      pending.notBefore = ready.retryAt
      continue
    }
    const size = Buffer.byteLength(ready.json)
    if (!first && bytes + size > maxBytes) break
    bytes += size + 1
    entries.push(pending)
    parts.push(ready.part)
    if (ready.json) json.push(ready.json)
    events += ready.part.events.length
  }
  if (entries.length === 0) return undefined
  const key = createHash('sha256').update(entries.map((e) => e.key).join(',')).digest('hex').slice(0, 32)
  return { entries, body: `[${json.join(',')}]`, events, key, parts }
}

/**
 * Takes the lease of one entry and reads its events. `retryAt`: leased by another instance, not to
 * be looked at before then; `skip`: gone or not readable yet (dropped, or looked at again later).
 */
async function prepare(context: GroupContext, pending: Pending): Promise<Ready | { retryAt: number } | 'skip'> {
  const { storage, queue, leases, io } = context
  const taken = await leases.take(pending)
  if (!taken.held) return { retryAt: taken.retryAt }
  if ((await io(storage.getItem(pending.key), 'read')) === null) {
    // Delivered meanwhile by its first owner or an adopter (even this instance's own entries are
    // adopted by another one that took it for dead).
    await leases.release(pending).catch(() => {})
    queue.drop(pending)
    return 'skip'
  }
  const record = parseRecord(await io(storage.getItem(pending.batch), 'read'), pending.batch)
  if (!record) {
    // No batch behind the entry: its write failed before it was acknowledged. Drop it once
    // that can no longer change.
    await leases.release(pending).catch(() => {})
    const droppable = pending.receivedAt + context.orphanAfterMs
    if (Date.now() > droppable) {
      await io(storage.removeItem(pending.key), 'write')
      queue.drop(pending)
    } else {
      // Looked at again when it can be dropped, or sooner, should its record land.
      pending.notBefore = Math.min(droppable + 1, Date.now() + RECHECK_MS)
    }
    return 'skip'
  }
  const stored = record.events as unknown[]
  const picked = pending.only?.filter((index) => Number.isInteger(index) && index >= 0 && index < stored.length)
  const chosen = picked ? picked.map((index) => stored[index]) : stored
  const part: SentPart = picked ? { events: chosen, positions: picked } : { events: chosen }
  return { part, json: JSON.stringify(chosen).slice(1, -1) }
}
