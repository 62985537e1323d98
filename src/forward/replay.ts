import { randomUUID } from 'node:crypto'
import { IngestError } from '../base/errors'
import type { EventLog } from '../log/event-log'
import { replayOutboxKey } from '../storage/layout'
import type { Forwarder } from './types'

/** What to replay: the stored batches received in `[since, until)`, and of them the events matching `name` and `source`. */
export interface ReplayFilter {
  /** Received at or after: ms since the epoch, a Date, or an ISO 8601 timestamp. */
  since: number | Date | string
  /** Received before: ms since the epoch, a Date, or an ISO 8601 timestamp. */
  until: number | Date | string
  name?: string
  source?: string
}

/** One replay and how far it got. */
export interface ReplayProgress {
  id: string
  /** `running` while scanning or batches are unsettled; `done` when every batch settled; `cancelled`; `failed` when the scan hit a storage error. */
  state: 'running' | 'done' | 'cancelled' | 'failed'
  since: string
  until: string
  name?: string
  source?: string
  startedAt: string
  finishedAt?: string
  /** Replay batches written to the outbox, delivered, and failed (dead letters, or not settled before close). */
  batches: { queued: number; delivered: number; failed: number }
  events: { queued: number; delivered: number; failed: number }
  /** Why a replay failed. */
  error?: string
}

/** What {@link Replays} works with. */
export interface ReplaysOptions {
  log: EventLog
  forwarder: Forwarder
  prefix: string
  instanceId: string
  maxReplays: number
  maxInFlight: number
}

const filterFields = new Set(['since', 'until', 'name', 'source'])

/** A replay's own state: its progress, whether it was cancelled, and the wake-up of its scan. */
interface Run {
  progress: ReplayProgress
  cancelled: boolean
  inFlight: number
  wake: (() => void) | undefined
}

/**
 * Replays: re-sends stored batches through the durable outbox (the same backoff, leases and dead
 * letters as first deliveries). Each batch goes as one outbox entry whose key comes from the batch
 * and the events chosen, so the same range replayed twice gives the same idempotency keys.
 */
export class Replays {
  private readonly runs = new Map<string, Run>()

  constructor(private readonly options: ReplaysOptions) {}

  /** Starts a replay; throws 400 `invalid_request` naming a bad field, 409 `too_many_replays` over `maxReplays`. */
  start(input: unknown): ReplayProgress {
    const filter = checkFilter(input)
    const running = [...this.runs.values()].filter((run) => run.progress.state === 'running').length
    if (running >= this.options.maxReplays) {
      throw new IngestError('too_many_replays', `replay: ${running} replays are running, the most at once (sink.maxReplays) is ${this.options.maxReplays}`, { limit: 'sink.maxReplays', value: this.options.maxReplays })
    }
    const progress: ReplayProgress = {
      id: randomUUID(),
      state: 'running',
      since: new Date(filter.since).toISOString(),
      until: new Date(filter.until).toISOString(),
      ...(filter.name !== undefined && { name: filter.name }),
      ...(filter.source !== undefined && { source: filter.source }),
      startedAt: new Date().toISOString(),
      batches: { queued: 0, delivered: 0, failed: 0 },
      events: { queued: 0, delivered: 0, failed: 0 },
    }
    const run: Run = { progress, cancelled: false, inFlight: 0, wake: undefined }
    this.runs.set(progress.id, run)
    void this.scan(run, filter)
    return { ...progress }
  }

  /** Every replay this process started, newest first. */
  list(): ReplayProgress[] {
    return [...this.runs.values()].map((run) => copy(run.progress)).reverse()
  }

  /** Stops a replay's scan; batches already in the outbox are still delivered. Null for an unknown id. */
  cancel(id: string): ReplayProgress | null {
    const run = this.runs.get(id)
    if (!run) return null
    if (run.progress.state === 'running') {
      run.cancelled = true
      run.progress.state = 'cancelled'
      run.wake?.()
    }
    return copy(run.progress)
  }

  private async scan(run: Run, filter: { since: number; until: number; name?: string; source?: string }): Promise<void> {
    const { log, forwarder, prefix, instanceId, maxInFlight } = this.options
    const settled: Promise<void>[] = []
    const { progress } = run
    try {
      for await (const { key, record } of log.batches(filter.since, filter.until)) {
        if (run.cancelled) break
        const all = filter.name === undefined && filter.source === undefined
        const positions: number[] = []
        if (!all) {
          record.events.forEach((event, index) => {
            if ((filter.name === undefined || event.name === filter.name) && (filter.source === undefined || event.source === filter.source)) positions.push(index)
          })
          if (positions.length === 0) continue
        }
        while (run.inFlight >= maxInFlight && !run.cancelled) await new Promise<void>((resolve) => (run.wake = resolve))
        if (run.cancelled) break
        const events = all ? record.events.length : positions.length
        const outboxKey = replayOutboxKey(prefix, instanceId, key, all ? undefined : positions)
        run.inFlight++
        progress.batches.queued++
        progress.events.queued += events
        const done = forwarder.replay(outboxKey, { batch: key, events, receivedAt: Date.now(), ...(!all && { only: positions }) })
        settled.push(done.then((delivered) => {
          const side = delivered ? 'delivered' : 'failed'
          progress.batches[side]++
          progress.events[side] += events
        }, () => {
          progress.batches.failed++
          progress.events.failed += events
        }).finally(() => {
          run.inFlight--
          run.wake?.()
        }))
      }
      await Promise.all(settled)
      if (progress.state === 'running') progress.state = 'done'
    } catch (error) {
      await Promise.allSettled(settled)
      progress.state = 'failed'
      progress.error = error instanceof Error ? error.message : String(error)
    }
    progress.finishedAt = new Date().toISOString()
  }
}

function copy(progress: ReplayProgress): ReplayProgress {
  return { ...progress, batches: { ...progress.batches }, events: { ...progress.events } }
}

/** A replay filter checked: every error names its field. */
export function checkFilter(input: unknown): { since: number; until: number; name?: string; source?: string } {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new IngestError('invalid_request', 'replay: expected an object { since, until, name?, source? }')
  }
  const record = input as Record<string, unknown>
  for (const field of Object.keys(record)) {
    if (!filterFields.has(field)) throw new IngestError('invalid_request', `${field}: unknown field; a replay takes since, until, name and source`, { field })
  }
  const since = timeOf('since', record.since)
  const until = timeOf('until', record.until)
  if (since >= until) throw new IngestError('invalid_request', `since: must be before until (since ${new Date(since).toISOString()}, until ${new Date(until).toISOString()})`, { field: 'since' })
  for (const field of ['name', 'source'] as const) {
    const value = record[field]
    if (value !== undefined && (typeof value !== 'string' || value === '')) throw new IngestError('invalid_request', `${field}: expected a non-empty string`, { field })
  }
  return { since, until, ...(record.name !== undefined && { name: record.name as string }), ...(record.source !== undefined && { source: record.source as string }) }
}

function timeOf(field: string, value: unknown): number {
  if (value === undefined) throw new IngestError('invalid_request', `${field}: required (an ISO 8601 timestamp or ms since the epoch)`, { field })
  const ms = value instanceof Date ? value.getTime() : typeof value === 'number' ? value : typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(value) ? Date.parse(value) : Number.NaN
  if (!Number.isFinite(ms)) throw new IngestError('invalid_request', `${field}: expected an ISO 8601 timestamp or ms since the epoch`, { field })
  return ms
}
