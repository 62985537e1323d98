import type { Storage } from 'unstorage'
import { withTimeout } from '../base/timeout'
import type { OutboxEntry } from '../log/event-log'
import type { StatsWindow } from '../stats/stats'
import { createClaimStore } from '../storage/claims'
import { createInstanceRegistry } from '../storage/registry'
import { Adoption } from './adoption'
import { backoffMs, classifyAttempt, type AttemptOutcome, type Verdict } from './classify'
import { DeadLetters } from './dead-letters'
import { buildGroup, type Group, type GroupContext } from './group'
import { Leases } from './leases'
import type { ResolvedSinkOptions } from './options'
import { OutboxQueue, type Pending } from './queue'
import { createSink } from './sinks/create'
import type { Sink } from './sinks/types'
import type { DeadLetter, ForwardEntry, Forwarder, ForwardingState } from './types'

/** What {@link createForwarder} is given. */
export interface ForwarderOptions {
  storage: Storage
  prefix: string
  instanceId: string
  sink: ResolvedSinkOptions
  stats: StatsWindow
  storageTimeoutMs: number
  onError?: (error: unknown) => void
}

/**
 * Creates the forwarder: delivers outbox batches to the sink at least once, oldest first per
 * instance, with backoff, `Retry-After`, idempotency keys, dead letters and leases between
 * instances that share storage.
 */
export function createForwarder(options: ForwarderOptions): Forwarder {
  return new OutboxForwarder(options)
}

/** Where the delivery of the head of the queue stands. */
interface HeadState {
  /** The group being delivered (kept, with its leases, across retries). */
  group: Group | undefined
  /** Groups still to build with a single batch, after the sink refused a combined request. */
  isolate: number
  /** Attempts made at the current group. */
  attempts: number
  /** Not before this (ms): a backoff, a `Retry-After`, or a wait for the head to become deliverable. */
  nextAttemptAt: number
  /**
   * The wait until `nextAttemptAt` is only for the head to become deliverable (leased elsewhere, no
   * record yet), not a backoff after the sink failed: an entry enqueued meanwhile ends it.
   */
  headWait: boolean
  /** Entries enqueued so far, so a scan of the head that missed some does not wait. */
  enqueued: number
}

/**
 * The forwarder of one instance, wiring the parts (each owns its state): the outbox queue, the
 * leases, grouping, the sink, dead letters, and heartbeat with adoption. What is its own is
 * the delivery of the head ({@link HeadState}) and the timers that drive it.
 */
export class OutboxForwarder implements Forwarder {
  private readonly queue = new OutboxQueue()
  private readonly storage: Storage
  private readonly leases: Leases
  private readonly letters: DeadLetters
  private readonly adoption: Adoption
  private readonly target: Sink
  private readonly grouping: GroupContext
  private readonly head: HeadState = { group: undefined, isolate: 0, attempts: 0, nextAttemptAt: 0, headWait: false, enqueued: 0 }
  private readonly sink: ResolvedSinkOptions
  private readonly stats: StatsWindow
  private readonly onError: (error: unknown) => void
  private readonly io: <T>(step: Promise<T>, what: string) => Promise<T>
  /** Start-up: dead letters counted, earlier outboxes adopted, this instance announced. */
  private readonly started: Promise<void>
  private timer: NodeJS.Timeout | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined
  /** The delivery loop, while it runs. */
  private running: Promise<void> | undefined
  private closed = false

  constructor(options: ForwarderOptions) {
    const { storage, prefix, instanceId, sink } = options
    this.sink = sink
    this.stats = options.stats
    this.onError = options.onError ?? (() => {})
    this.io = (step, what) => withTimeout(step, options.storageTimeoutMs, what)
    this.storage = storage
    this.leases = new Leases(createClaimStore(storage, prefix), prefix, instanceId, sink.leaseMs, this.io)
    const registry = createInstanceRegistry({ storage, prefix, instanceId, staleAfterMs: Math.max(sink.leaseMs, sink.heartbeatMs * 3) })
    this.letters = new DeadLetters(storage, prefix, this.io)
    this.adoption = new Adoption(storage, prefix, instanceId, registry, this.queue, this.io)
    this.target = createSink(sink)
    this.grouping = {
      storage, queue: this.queue, leases: this.leases, io: this.io,
      maxEvents: sink.maxBatchEvents, maxBytes: sink.maxBatchBytes, orphanAfterMs: options.storageTimeoutMs * 4,
    }
    this.started = this.start()
  }

  async enqueue(outboxKey: string, entry: OutboxEntry): Promise<boolean> {
    const held = this.queue.find(outboxKey)
    // Known already (its record has landed meanwhile, say): looked at again now.
    if (held) held.notBefore = undefined
    else if (!this.queue.has(outboxKey)) this.queue.insert({ ...entry, key: outboxKey })
    const { head } = this
    head.enqueued++
    // A batch to deliver now: no reason left to wait for the head.
    if (head.headWait) {
      head.headWait = false
      head.nextAttemptAt = 0
    }
    const delivered = this.sink.wait ? this.queue.waitFor(outboxKey) : undefined
    void this.started.then(() => this.pump())
    if (!delivered) return false
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.sink.waitTimeoutMs)))
    return Promise.race([delivered, timedOut]).finally(() => clearTimeout(timer))
  }

  state(): ForwardingState {
    const now = Date.now()
    const { events, oldest } = this.queue.totals()
    const pending = this.queue.length > 0
    return {
      sink: this.target.name,
      backlog: this.queue.length,
      backlogEvents: events,
      oldestPendingMs: pending ? now - oldest : null,
      deadLetters: this.letters.count,
      attempts: this.head.attempts,
      nextAttemptInMs: pending ? Math.max(0, this.head.nextAttemptAt - now) : null,
    }
  }

  deadLetters(): Promise<DeadLetter[]> {
    return this.letters.list()
  }

  async replay(outboxKey: string, entry: ForwardEntry): Promise<boolean> {
    // Already queued (the same batch and events replayed again meanwhile), perhaps in the attempt in
    // flight, whose end removes the entry: written again only once that one has left the queue.
    while (this.queue.has(outboxKey)) {
      if (this.closed) return false
      await this.queue.waitFor(outboxKey)
    }
    if (this.closed) return false
    await this.io(this.storage.setItem(outboxKey, JSON.stringify({ ...entry, replay: true })), 'write')
    const delivered = this.queue.waitFor(outboxKey)
    this.queue.insert({ ...entry, replay: true, key: outboxKey })
    void this.started.then(() => this.pump())
    return delivered
  }

  async requeue(ids?: readonly string[]): Promise<number> {
    const requeued = await this.letters.requeue(ids, (pending) => this.queue.insert(pending))
    void this.pump()
    return requeued
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.timer)
    clearTimeout(this.heartbeatTimer)
    await this.started.catch(() => {})
    // The attempt in flight may finish (and its batch leave the outbox); past the attempt timeout
    // it is aborted and stays in the outbox for the next start. Nothing is lost either way.
    const current = this.running
    if (current) {
      const limit = setTimeout(() => this.target.abort(), this.sink.timeoutMs)
      await current.catch(() => {})
      clearTimeout(limit)
    }
    this.queue.releaseWaiters()
    for (const pending of this.head.group?.entries ?? []) await this.leases.release(pending).catch(this.onError)
    await this.adoption.leave().catch(this.onError)
    await this.target.close().catch(this.onError)
  }

  /** Counts dead letters, picks up earlier outboxes and announces this instance, then beats. */
  private async start(): Promise<void> {
    try {
      await this.letters.load()
      await this.adoption.start()
    } catch (error) {
      this.onError(error)
    }
    await this.tick()
  }

  private async tick(): Promise<void> {
    try {
      await this.adoption.beat()
    } catch (error) {
      this.onError(error)
    }
    void this.pump()
    if (!this.closed) {
      this.heartbeatTimer = setTimeout(() => void this.tick(), this.sink.heartbeatMs)
      this.heartbeatTimer.unref()
    }
  }

  private schedule(delay: number): void {
    if (this.closed) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => void this.pump(), Math.max(0, delay))
    this.timer.unref()
  }

  /** Runs the delivery loop unless it runs already; resolves when it stops. */
  private pump(): Promise<void> {
    if (this.running || this.closed) return this.running ?? Promise.resolve()
    // `running` must be set before the loop can finish and clear it.
    this.running = this.loop()
    return this.running
  }

  private async loop(): Promise<void> {
    await Promise.resolve()
    const { head } = this
    try {
      while (!this.closed && this.queue.length > 0) {
        const wait = head.nextAttemptAt - Date.now()
        if (wait > 0) {
          this.schedule(wait)
          return
        }
        await this.deliverHead()
      }
    } catch (error) {
      // A storage step failed: the same group is tried again after a backoff.
      this.onError(error)
      head.attempts++
      head.nextAttemptAt = Date.now() + backoffMs({ ...this.sink, attempt: head.attempts })
      this.schedule(head.nextAttemptAt - Date.now())
    } finally {
      this.running = undefined
    }
  }

  private async deliverHead(): Promise<void> {
    const { head } = this
    if (head.group && !(await this.leases.renew(head.group.entries))) head.group = undefined
    head.headWait = false
    const seen = head.enqueued
    if (!head.group) {
      head.group = await buildGroup(this.grouping, head.isolate > 0)
      if (head.group && head.isolate > 0) head.isolate--
    }
    const group = head.group
    if (!group) {
      // Everything at the head is leased by another instance or not yet readable: look again when
      // the first of them may have changed, or at once for entries enqueued during the scan.
      if (this.queue.length > 0 && head.enqueued === seen) {
        head.nextAttemptAt = Math.max(this.queue.soonest(), Date.now() + 50)
        head.headWait = true
      }
      return
    }
    const started = performance.now()
    const outcome = await this.target.send(group)
    if (outcome.kind === 'failure' && outcome.aborted && this.closed) return
    this.timeAttempt(group, outcome, performance.now() - started)
    await this.settle(group, outcome, classifyAttempt(outcome, { ...this.sink, attempt: head.attempts + 1, now: Date.now(), parts: group.parts }))
  }

  /** Reports how long an attempt took and, when the sink took the batches, how long after their receipt. */
  private timeAttempt(group: Group, outcome: AttemptOutcome, attemptMs: number): void {
    const took = outcome.kind === 'answer' && outcome.status >= 200 && outcome.status < 300
    const now = Date.now()
    this.stats.recordDeliveryTimes(attemptMs, took ? group.entries.map((entry) => now - entry.receivedAt) : [])
  }

  /** Acts on the verdict on one attempt at `group`. */
  private async settle(group: Group, outcome: AttemptOutcome, verdict: Verdict): Promise<void> {
    const { head, stats } = this
    const attempt = head.attempts + 1
    const status = outcome.kind === 'answer' ? outcome.status : 0
    const body = outcome.kind === 'answer' ? outcome.body : ''
    switch (verdict.kind) {
      case 'delivered':
        stats.recordForwarded(group.events, Date.now())
        return this.finish(group, true)
      case 'partial': {
        let refused = 0
        for (const list of verdict.refused.values()) refused += list.length
        if (refused < group.events) stats.recordForwarded(group.events - refused, Date.now())
        stats.recordForwardFailure(verdict.failure, Date.now())
        await this.letters.partial(group, verdict.refused, status, body, attempt)
        return this.finish(group, true, new Set([...verdict.refused.keys()].map((entry) => group.entries[entry]!)))
      }
      case 'retry':
        head.attempts = attempt
        stats.recordForwardFailure(verdict.failure, Date.now())
        head.nextAttemptAt = verdict.at
        return
      case 'split':
        // One bad batch must not take its neighbours down: send the group's batches one by one,
        // so only the one the sink refuses becomes a dead letter.
        head.isolate = group.entries.length
        for (const pending of group.entries) await this.leases.release(pending).catch(this.onError)
        return this.reset()
      case 'dead':
        head.attempts = attempt
        stats.recordForwardFailure(verdict.failure, Date.now())
        await this.letters.refused(group, status, body, attempt)
        return this.finish(group, false)
    }
  }

  /** Takes a settled group out of the outbox and the queue. `refused`: entries that count as not delivered. */
  private async finish(group: Group, delivered: boolean, refused?: ReadonlySet<Pending>): Promise<void> {
    for (const pending of group.entries) {
      await this.io(this.storage.removeItem(pending.key), 'write')
      await this.leases.release(pending).catch(() => {})
      this.queue.drop(pending, delivered && !refused?.has(pending))
    }
    this.reset()
  }

  private reset(): void {
    this.head.group = undefined
    this.head.attempts = 0
    this.head.nextAttemptAt = 0
  }
}
