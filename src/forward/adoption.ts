import type { Storage } from 'unstorage'
import type { OutboxEntry } from '../log/event-log'
import { outboxBase, outboxOwner } from '../storage/layout'
import type { InstanceRegistry } from '../storage/registry'
import { parseJson } from './dead-letters'
import type { OutboxQueue } from './queue'

/**
 * Heartbeat and adoption: each instance registers in the forwarder's instance registry every
 * `heartbeatMs`; one not seen for `max(leaseMs, 3 × heartbeatMs)` is dead, and the live ones
 * queue its outbox entries (leases then decide which of them delivers each).
 */
export class Adoption {
  constructor(
    private readonly storage: Storage,
    private readonly prefix: string,
    private readonly instanceId: string,
    private readonly registry: InstanceRegistry,
    private readonly queue: OutboxQueue,
    private readonly io: <T>(step: Promise<T>, what: string) => Promise<T>,
  ) {}

  /**
   * At start: picks up every outbox entry left by earlier runs and by dead instances (the one full
   * scan; later only dead instances' entries are taken).
   */
  async start(): Promise<void> {
    const now = Date.now()
    const { live } = await this.io(this.registry.read(now), 'read')
    // Announce this instance before scanning, so instances starting meanwhile leave its batches alone.
    await this.io(this.registry.register(now), 'write')
    await this.adopt(new Set(live.map((seen) => seen.id)))
  }

  /** One heartbeat: registers this instance, and adopts the outboxes of instances found dead. */
  async beat(): Promise<void> {
    const now = Date.now()
    const { live, stale } = await this.io(this.registry.read(now), 'read')
    const dead = stale.filter((seen) => seen.id !== this.instanceId)
    await this.io(this.registry.register(now), 'write')
    if (dead.length === 0) return
    // Everything no live instance delivers: the dead ones' outboxes, with the entries they had adopted
    // from instances that died before them (those keep their first owner's key). The dead leave the
    // registry only once that worked, so a failed adoption is tried again on the next beat.
    await this.adopt(new Set([this.instanceId, ...live.map((seen) => seen.id)]))
    await this.io(this.registry.removeStale(dead), 'write')
  }

  /**
   * Marks this instance as gone (last seen at 0), so that another instance adopts what is left here
   * at its next heartbeat instead of waiting for this one to go stale. (Removing the entry would
   * hide it from heartbeats: only listed instances are ever found dead.)
   */
  async leave(): Promise<void> {
    await this.io(this.registry.register(0), 'write')
  }

  /** Queues the outbox entries of this instance and of every instance not in `alive`. */
  private async adopt(alive: ReadonlySet<string>): Promise<void> {
    const keys = (await this.io(this.storage.getKeys(outboxBase(this.prefix)), 'list')).sort()
    for (const key of keys) {
      if (this.queue.has(key)) continue
      // Another live instance delivers its own outbox, in its own order.
      const owner = outboxOwner(this.prefix, key)
      if (owner !== this.instanceId && alive.has(owner)) continue
      const entry = await this.io(this.storage.getItem<OutboxEntry>(key), 'read')
      const parsed = typeof entry === 'string' ? (parseJson(entry) as OutboxEntry | null) : entry
      if (!parsed || typeof parsed.batch !== 'string') continue
      this.queue.insert({ ...parsed, key })
    }
  }
}
