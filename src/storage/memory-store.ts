import type { AtomicBatch, AtomicBatchStore, AtomicResult } from './atomic'
import type { ClaimTable } from './claim-table'
import { outboxKey, parseClaim } from './layout'

/** The memory driver's Map, and how a storage key maps to its key there. */
export interface DriverMap {
  map: Map<string, unknown>
  relative(key: string): string
}

/** Options of {@link MemoryBatchStore}. */
export interface MemoryBatchStoreOptions {
  /** The log's key prefix (the outbox entry of a dropped batch is found from it). */
  prefix: string
  /** The memory driver's Map the records and outbox entries go to. */
  local: DriverMap
  /** The driver's dedupe claims. */
  claims: ClaimTable
  /** The dedupe window, in ms: an older claim is taken over. */
  windowMs: number
  /** @default Infinity */
  maxEvents?: number
  /** @default Infinity */
  maxBytes?: number
  /** Told once, when the bound is first reached. */
  onError?: (error: unknown) => void
}

/** A batch this store keeps, for the bound. */
interface Kept {
  key: string
  /** The record's key in the driver's Map. */
  local: string
  /** Removed by someone else (a prune) since: skipped when its turn comes. */
  gone: boolean
  events: number
  bytes: number
  claim: string
  /** The claim table's entries of its claims (see ClaimTable.lastEntry), to forget them. */
  entries: number | number[]
  outbox: boolean
}

/**
 * The one-step batch write on unstorage's memory driver: claims checked and set in the
 * {@link ClaimTable}, the record and outbox entry put into the driver's Map, in one synchronous
 * call, so no other request runs in between and nothing is left half done. A claim whose batch
 * record is gone (pruned, cleared, dropped by the bound) or that is past the window is taken over.
 *
 * It also owns the memory bound: past `maxEvents` events or `maxBytes` bytes of records, the oldest
 * batches go, with their claims (a claim naming a batch that is gone would be taken over anyway, so
 * keeping it would keep memory, not deduplication) and outbox entries.
 */
export class MemoryBatchStore implements AtomicBatchStore {
  private readonly map: Map<string, unknown>
  private readonly relative: (key: string) => string
  private readonly claims: ClaimTable
  private readonly windowMs: number
  private readonly prefix: string
  private readonly maxEvents: number
  private readonly maxBytes: number
  private readonly onError?: (error: unknown) => void
  // The batches stored here while bounded, oldest first from `head`. The queue is all the bound
  // needs to drop the oldest; a batch removed by someone else meanwhile is marked gone and skipped
  // when its turn comes. (Taking the oldest from the Map itself would walk the holes its deletions
  // leave at the front, on every batch; a Map by key beside the queue would cost every batch a
  // lookup in a table as large as the store: there is one only while a prune runs, see `byKey`.)
  private order: Kept[] = []
  private head = 0
  private heldCount = 0
  // Batches in `order` (from `head` on) marked gone: the queue is rebuilt without them once they
  // outnumber the batches held, so prunes that keep the store under its bound do not leave it growing.
  private stale = 0
  // The queue's batches by key while a prune runs (made by its first `removed`, dropped once it
  // ends): only prunes look batches up, and between prunes no batch pays for the Map.
  private byKey: Map<string, Kept> | undefined
  private keptEvents = 0
  private keptBytes = 0
  private readonly drops = { batches: 0, events: 0 }

  constructor(options: MemoryBatchStoreOptions) {
    this.map = options.local.map
    this.relative = options.local.relative
    this.claims = options.claims
    this.windowMs = options.windowMs
    this.prefix = options.prefix
    this.maxEvents = options.maxEvents ?? Infinity
    this.maxBytes = options.maxBytes ?? Infinity
    this.onError = options.onError
  }

  append(batch: AtomicBatch): AtomicResult {
    const at = batch.claimedAt
    const found = this.claims.claim(batch.ids, batch.claim)
    let entries: number | number[] = this.claims.lastEntry
    const duplicates: number[] = []
    let takeOver: string[] | undefined
    for (let i = 0; i < found.length; i++) {
      const held = found[i]
      if (held === null || held === undefined) continue
      if (this.isFree(held, at)) (takeOver ??= []).push(batch.ids[i]!)
      else duplicates.push(i)
    }
    if (duplicates.length === batch.ids.length) return { duplicates }
    if (takeOver) {
      this.claims.overwrite(takeOver, batch.claim)
      entries = entries === 0 ? this.claims.lastEntry : [entries, this.claims.lastEntry]
    }
    const stored = batch.ids.length - duplicates.length
    const record = batch.record(duplicates.length === 0 ? undefined : positionsBut(batch.ids.length, duplicates))
    const local = this.relative(batch.batchKey)
    this.map.set(local, record)
    if (batch.outbox) this.map.set(this.relative(batch.outbox.key), batch.outbox.entry(stored))
    if (this.bounded) this.keep({ key: batch.batchKey, local, gone: false, events: stored, bytes: typeof record === 'string' ? record.length : record.byteLength, claim: batch.claim, entries, outbox: batch.outbox !== undefined })
    return { duplicates }
  }

  /** Whether a claim found held no longer dedupes: past the window, or its record is gone. */
  private isFree(held: string, at: number): boolean {
    const claim = parseClaim(held)
    return at - claim.at >= this.windowMs || !this.map.has(this.relative(claim.batch))
  }

  private get bounded(): boolean {
    return this.maxEvents !== Infinity || this.maxBytes !== Infinity
  }

  /** What the bound holds now. */
  get kept(): { batches: number; events: number; bytes: number } {
    return { batches: this.heldCount, events: this.keptEvents, bytes: this.keptBytes }
  }

  /** What the bound dropped so far. */
  get dropped(): { batches: number; events: number } {
    return { ...this.drops }
  }

  /** Counts a batch removed from the storage by someone else (a prune) out of the bound. */
  removed(batchKey: string): void {
    if (this.heldCount === 0) return
    if (!this.byKey) {
      this.byKey = new Map()
      for (let i = this.head; i < this.order.length; i++) if (!this.order[i]!.gone) this.byKey.set(this.order[i]!.key, this.order[i]!)
    }
    const kept = this.byKey.get(batchKey)
    if (!kept) return
    this.byKey.delete(batchKey)
    kept.gone = true
    this.heldCount--
    this.keptEvents -= kept.events
    this.keptBytes -= kept.bytes
    // It stays in the queue until its turn, or until the queue is rebuilt.
    this.stale++
    if (this.stale > this.heldCount + 1024) this.rebuildOrder()
  }

  /** A prune ended: its lookups by key are done. */
  pruned(): void {
    this.byKey = undefined
  }

  /** The queue of held batches, oldest first, without those removed since. */
  private rebuildOrder(): void {
    this.order = this.order.slice(this.head).filter((kept) => !kept.gone)
    this.head = 0
    this.stale = 0
  }

  /** Counts a batch, then drops the oldest (never this one) until the bound holds again. */
  private keep(kept: Kept): void {
    this.order.push(kept)
    this.byKey?.set(kept.key, kept)
    this.heldCount++
    this.keptEvents += kept.events
    this.keptBytes += kept.bytes
    while ((this.keptEvents > this.maxEvents || this.keptBytes > this.maxBytes) && this.heldCount > 1) {
      const dropped = this.order[this.head]!
      this.order[this.head++] = undefined as never
      if (dropped.gone) {
        this.stale--
        continue
      }
      this.byKey?.delete(dropped.key)
      this.heldCount--
      this.keptEvents -= dropped.events
      this.keptBytes -= dropped.bytes
      this.claims.forget(dropped.entries, dropped.claim)
      if (this.drops.batches === 0) this.tellBound(dropped.events)
      this.drops.batches++
      this.drops.events += dropped.events
      this.map.delete(dropped.local)
      if (dropped.outbox) this.map.delete(this.relative(outboxKey(this.prefix, dropped.key)))
    }
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head)
      this.head = 0
    }
  }

  private tellBound(count: number): void {
    const bound = this.keptEvents + count > this.maxEvents ? `${this.maxEvents} events (maxEvents)` : `${this.maxBytes} bytes of batches (maxBytes)`
    this.onError?.(new Error(`the memory storage holds ${bound}: the oldest batches are dropped from now on, and counted; use fs or Redis storage to keep more`))
  }
}

/** The positions 0 … `length - 1` but those in `skip` (sorted). */
function positionsBut(length: number, skip: readonly number[]): number[] {
  const positions: number[] = []
  let next = 0
  for (let p = 0; p < length; p++) {
    if (next < skip.length && skip[next] === p) next++
    else positions.push(p)
  }
  return positions
}
