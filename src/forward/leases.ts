import type { ClaimStore } from '../storage/claims'
import { leaseKey, leaseValue, outboxId, parseLease } from '../storage/layout'
import type { Pending } from './queue'

/**
 * Delivery leases between instances that share storage: an outbox entry is delivered by the
 * instance holding its lease (`<instance>|<until>`, see layout.ts). A lease is taken with the
 * claim store's set-if-absent; an expired one is taken over, and a held one renewed, by its
 * compare-and-set only, so of several instances at one lease one wins and the others leave it.
 */

/** What taking an entry's lease came to. */
export type LeaseTake =
  | { held: true; lease: string }
  /** Another instance holds it, or took it over first: not looked at again before `retryAt` (ms). */
  | { held: false; retryAt: number }

/** Longest wait before an entry leased elsewhere is looked at again (ms). */
const RECHECK_MS = 5000

export class Leases {
  constructor(
    private readonly claims: ClaimStore,
    private readonly prefix: string,
    private readonly instanceId: string,
    private readonly leaseMs: number,
    /** Runs one storage step with the storage timeout. */
    private readonly io: <T>(step: Promise<T>, what: string) => Promise<T>,
  ) {}

  /** Takes the lease of `pending` for this instance (setting `pending.lease`), unless another instance holds it. */
  async take(pending: Pending): Promise<LeaseTake> {
    const key = this.keyOf(pending)
    const lease = this.fresh()
    const [holder] = await this.io(this.claims.claim([key], lease, this.leaseMs), 'lease')
    if (holder !== null && holder !== undefined) {
      const { owner, until } = parseLease(holder)
      // Another instance is delivering it right now.
      if (owner !== this.instanceId && until > Date.now()) return { held: false, retryAt: Math.min(until, Date.now() + RECHECK_MS) }
      // Expired (or this instance's own): taken over by compare-and-set, so that of several
      // instances taking one expired lease at the same moment only one delivers the batch.
      const [won] = await this.io(this.claims.replace([key], [holder], lease, this.leaseMs), 'lease')
      // Another instance took it over (or released it) since it was read: its batch is left alone.
      if (!won) return { held: false, retryAt: Date.now() + Math.min(this.leaseMs, RECHECK_MS) }
    }
    pending.lease = lease
    return { held: true, lease }
  }

  /**
   * Before each retry of a group: keeps its leases while they still hold what this instance wrote,
   * by compare-and-set (a lease taken over meanwhile is never overwritten). Resolves false when one
   * expired or changed hands meanwhile: another instance may have delivered its batch, so the
   * group is built again, which claims afresh and skips entries gone from the outbox.
   */
  async renew(entries: readonly Pending[]): Promise<boolean> {
    const lease = this.fresh()
    const expected = entries.map((pending) => pending.lease ?? '')
    const renewed = await this.io(this.claims.replace(entries.map((p) => this.keyOf(p)), expected, lease, this.leaseMs), 'lease')
    entries.forEach((pending, i) => {
      if (renewed[i]) pending.lease = lease
    })
    return renewed.every(Boolean)
  }

  /** Releases the lease `pending` holds, if any (only while it still holds this instance's value). */
  async release(pending: Pending): Promise<void> {
    const { lease } = pending
    pending.lease = undefined
    if (lease) await this.io(this.claims.release([this.keyOf(pending)], lease), 'lease')
  }

  private keyOf(pending: Pending): string {
    return leaseKey(this.prefix, outboxId(this.prefix, pending.key))
  }

  private fresh(): string {
    return leaseValue(this.instanceId, Date.now() + this.leaseMs)
  }
}
