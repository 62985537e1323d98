import { outboxOrder } from '../storage/layout'
import type { ForwardEntry } from './types'

/** An outbox entry in this instance's queue. */
export interface Pending extends ForwardEntry {
  /** Its outbox key. */
  key: string
  /** The lease value this instance holds on it, if any. */
  lease?: string
  /** Found undeliverable (leased by another instance, or no record yet): not looked at before this (ms). */
  notBefore?: number
}

/**
 * This instance's outbox queue, in acceptance order (see {@link outboxOrder}), each key at most
 * once, and the ingests waiting for their batch to reach the sink (`sink.wait`).
 */
export class OutboxQueue {
  private readonly entries: Pending[] = []
  /** The keys in `entries`. */
  private readonly known = new Set<string>()
  /** Outbox key to the waiting ingest's resolve. */
  private readonly waiters = new Map<string, (delivered: boolean) => void>()

  get length(): number {
    return this.entries.length
  }

  has(key: string): boolean {
    return this.known.has(key)
  }

  find(key: string): Pending | undefined {
    return this.known.has(key) ? this.entries.find((pending) => pending.key === key) : undefined
  }

  /** Inserts an entry at its place in acceptance order; a key already queued is left as it is. */
  insert(pending: Pending): void {
    if (this.known.has(pending.key)) return
    this.known.add(pending.key)
    const rank = outboxOrder(pending.key)
    let index = this.entries.length
    while (index > 0 && outboxOrder(this.entries[index - 1]!.key) > rank) index--
    this.entries.splice(index, 0, pending)
  }

  /** Removes an entry, telling its waiter whether it was delivered. */
  drop(pending: Pending, delivered = false): void {
    // Delivered batches leave from the head, in order: shift() is cheap there even for a long queue.
    if (this.entries[0] === pending) this.entries.shift()
    else {
      const index = this.entries.indexOf(pending)
      if (index >= 0) this.entries.splice(index, 1)
    }
    this.known.delete(pending.key)
    this.waiters.get(pending.key)?.(delivered)
    this.waiters.delete(pending.key)
  }

  /**
   * The first `max` entries that may be deliverable at `now`, as a copy: `enqueue` and adoption
   * insert into the queue while a group is built, and an entry inserted ahead of the current one
   * would make the builder visit an entry twice and skip another. Entries found undeliverable a
   * moment ago are passed over until they may have changed, so however many of them sit at the
   * head, the entries behind them go on.
   */
  candidates(now: number, max: number): Pending[] {
    const found: Pending[] = []
    for (let i = 0; i < this.entries.length && found.length < max; i++) {
      const pending = this.entries[i]!
      if (pending.notBefore === undefined || pending.notBefore <= now) found.push(pending)
    }
    return found
  }

  /** The earliest time an entry may be looked at again (0 when one may be now); Infinity when empty. */
  soonest(): number {
    let soonest = Infinity
    for (const pending of this.entries) soonest = Math.min(soonest, pending.notBefore ?? 0)
    return soonest
  }

  /** Events in the queue, and the receive time of the oldest batch (Infinity when empty). */
  totals(): { events: number; oldest: number } {
    let events = 0
    let oldest = Infinity
    for (const pending of this.entries) {
      events += pending.events
      oldest = Math.min(oldest, pending.receivedAt)
    }
    return { events, oldest }
  }

  /** Resolves when `key` leaves the queue: true when delivered. */
  waitFor(key: string): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      // A second waiter on the same key (a replay of a batch already queued) is told as well.
      const before = this.waiters.get(key)
      this.waiters.set(key, before ? (delivered) => (before(delivered), resolve(delivered)) : resolve)
    })
  }

  /** Tells every waiter its batch was not delivered (on close). */
  releaseWaiters(): void {
    for (const resolve of this.waiters.values()) resolve(false)
    this.waiters.clear()
  }
}
