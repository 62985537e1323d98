import type { Storage } from 'unstorage'
import { withTimeout } from '../base/timeout'
import type { EventEnvelope } from '../model/model'
import type { RecordReader } from './record'
import type { AppendResult, EventLogOptions, OutboxEntry } from './types'

/** A batch whose request answered 503 after its writes were sent. */
export interface LateBatch {
  result: AppendResult & { batchKey: string }
  events: readonly EventEnvelope[]
  receivedAt: number
  outboxKey?: string
  entry?: OutboxEntry
}

/** What settling needs of the log. */
export interface SettleContext {
  storage: Storage
  timeoutMs: number
  records: RecordReader
  options: Pick<EventLogOptions, 'onLateWrite' | 'onUnstored' | 'onError'>
}

/**
 * Late settling: the background work on batches whose requests answered 503 with their writes
 * sent (finding out whether the record landed, writing its outbox entry, reporting it to be
 * counted and forwarded), retried with backoff until done or until `close()`, which makes one
 * last attempt. Also keeps count of the background work on each batch (`busy`): a batch with work
 * left is not settled yet, whatever its claims say.
 */
export class LateSettling {
  private readonly work = new Set<Promise<void>>()
  private readonly sleepers = new Set<() => void>()
  private closing = false
  // Batches with work on their claims or writes still running, by how many such jobs.
  private readonly jobs = new Map<string, number>()

  constructor(private readonly context: SettleContext) {}

  /** Whether background work on `batchKey` is still running. */
  busy(batchKey: string): boolean {
    return this.jobs.has(batchKey)
  }

  /** Marks background work on a batch until `work` settles (see `busy`). */
  track<T>(batchKey: string, work: Promise<T>): Promise<T> {
    this.jobs.set(batchKey, (this.jobs.get(batchKey) ?? 0) + 1)
    const done = () => {
      const left = this.jobs.get(batchKey)! - 1
      if (left === 0) this.jobs.delete(batchKey)
      else this.jobs.set(batchKey, left)
    }
    work.then(done, done)
    return work
  }

  /** Waits before a background attempt again; false once the log is closing (no more attempts). */
  retryLater(attempt: number): Promise<boolean> {
    if (this.closing) return Promise.resolve(false)
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.sleepers.delete(done)
        resolve(true)
      }
      const timer = setTimeout(done, Math.min(this.context.timeoutMs * 2 ** Math.min(attempt, 10), 30_000))
      timer.unref()
      this.sleepers.add(done)
    })
  }

  /** Writes an outbox entry (again), bounded by the storage timeout; resolves the error, if any. */
  writeOutbox(outboxKey: string, entry: OutboxEntry): Promise<unknown> {
    const { storage, timeoutMs } = this.context
    return withTimeout(storage.setItem(outboxKey, JSON.stringify(entry)), timeoutMs, 'write').then(() => undefined, (error: unknown) => error ?? new Error('outbox write failed'))
  }

  /**
   * Whether the record of a batch whose writes settled as `outcome` is stored. A write that failed
   * may still have landed (a client-side timeout, an fsync failing after the rename): it is read
   * back. Undefined when that read fails.
   */
  recordLanded(outcome: PromiseSettledResult<void>[], batchKey: string): Promise<boolean | undefined> {
    if (outcome[0]!.status === 'fulfilled') return Promise.resolve(true)
    return this.context.records.read(batchKey).then((record) => record !== null, () => undefined)
  }

  /**
   * Settles a batch of the claim protocol in the background: waits for its writes, reads the
   * record back until storage answers (unless `there` is already known), and if it is stored,
   * writes its outbox entry until that works (it may have failed, or been dropped by a forwarder
   * that found no record behind it yet); then reports the batch, to be counted and forwarded.
   */
  settleWrites(late: LateBatch, written: Promise<PromiseSettledResult<void>[]>, there: boolean | undefined): void {
    this.run(late.result.batchKey, async () => {
      const outcome = await written
      for (let attempt = 0; there === undefined; attempt++) {
        there = await this.recordLanded(outcome, late.result.batchKey)
        if (there === undefined && !(await this.retryLater(attempt))) return
      }
      if (!there) {
        if (late.outboxKey) this.context.options.onUnstored?.(late.outboxKey, late.entry!)
        return
      }
      if (await this.outboxSettled(late)) this.context.options.onLateWrite?.(late.result, late.events, late.receivedAt)
    })
  }

  /**
   * Settles a one-step write whose outcome is unknown (the store's call rejected or timed out):
   * finds out, with the same backoff, whether the record is there; if so the batch was stored
   * whole, outbox entry included, and is reported like any late write. Not there: nothing was
   * stored, and nothing is left to undo. `stored` says, from the record, which events it holds.
   * `answered` is the store's own call: when it still answers (a late reply of a call that timed
   * out), that answer is the outcome, with no read.
   */
  settleOneStep(late: LateBatch, stored: (batchKey: string) => Promise<AppendResult | undefined>, answered?: Promise<AppendResult>): void {
    const { storage, timeoutMs, options } = this.context
    this.run(late.result.batchKey, async () => {
      if (answered) {
        const reply = await Promise.race([answered.then((result) => ({ result }), () => undefined), this.retryLater(0).then(() => undefined)])
        if (reply) {
          if (reply.result.stored > 0) options.onLateWrite?.({ ...reply.result, batchKey: late.result.batchKey }, late.events, late.receivedAt)
          return
        }
      }
      for (let attempt = 0; ; attempt++) {
        if (!(await this.retryLater(attempt)) && attempt > 0) return
        const there = await withTimeout(storage.hasItem(late.result.batchKey), timeoutMs, 'read').catch(() => undefined)
        if (there === false) return
        if (there) {
          const result = (await stored(late.result.batchKey).catch(() => undefined)) ?? late.result
          options.onLateWrite?.({ ...result, batchKey: late.result.batchKey }, late.events, late.receivedAt)
          return
        }
        if (this.closing) return
      }
    })
  }

  /** Writes a stored batch's outbox entry until it works; false when the log closed first. */
  private async outboxSettled(late: LateBatch): Promise<boolean> {
    const { onError } = this.context.options
    for (let attempt = 0; late.outboxKey; attempt++) {
      const error = await this.writeOutbox(late.outboxKey, late.entry!)
      if (error === undefined) break
      if (attempt === 0) onError?.(new Error(`outbox entry of stored batch ${late.result.batchKey} not written yet, retrying: ${(error as Error).message ?? error}`, { cause: error }))
      if (!(await this.retryLater(attempt))) {
        onError?.(new Error(`outbox entry of stored batch ${late.result.batchKey} not written before close: the batch is not forwarded`))
        return false
      }
    }
    return true
  }

  private run(batchKey: string, job: () => Promise<void>): void {
    const run = job().catch((error) => {
      try {
        this.context.options.onError?.(error)
      } catch {}
    })
    this.work.add(this.track(batchKey, run))
    void run.finally(() => this.work.delete(run))
  }

  /** Stops the background work: each job makes one last attempt now, waited for at most twice the storage timeout. */
  async close(): Promise<void> {
    this.closing = true
    for (const sleeper of [...this.sleepers]) sleeper()
    if (this.work.size > 0) await withTimeout(Promise.allSettled([...this.work]), this.context.timeoutMs * 2, 'close').catch(() => {})
  }
}
