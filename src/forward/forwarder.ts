import { createHash } from 'node:crypto'
import { ofetch } from 'ofetch'
import type { Storage } from 'unstorage'
import { createClaimStore } from '../storage/claims'
import { parseRecord, type OutboxEntry } from '../log/event-log'
import { withTimeout } from '../base/timeout'
import type { StatsWindow } from '../stats/stats'
import { checkBoolean, checkNumber, checkObject, checkString, MAX_TIMER_MS, shown } from '../base/option-checks'

/** Where and how accepted batches are forwarded. Every field but `url` has a default. */
export interface SinkOptions {
  /** The sink's URL; it receives `POST` with a JSON array of events (the ingest envelope). */
  url: string
  /** Credential sent to the sink. @default process.env.EVENT_SINK_TOKEN */
  token?: string
  /**
   * Header carrying `token`: `authorization` sends `Bearer <token>`, any other name the raw token.
   * @default 'authorization'
   */
  tokenHeader?: string
  /** Extra headers for every sink request. */
  headers?: Record<string, string>
  /**
   * Time limit of one attempt, in ms (a fresh one per attempt).
   * @default 10_000
   */
  timeoutMs?: number
  /** First retry delay, in ms; doubles per attempt, with full jitter. @default 500 */
  minBackoffMs?: number
  /** Longest retry delay, in ms. @default 60_000 */
  maxBackoffMs?: number
  /** Longest `Retry-After` honoured, in ms. @default 600_000 */
  maxRetryAfterMs?: number
  /** Most events in one sink request (small ingests are combined). @default 1000 */
  maxBatchEvents?: number
  /** Most bytes in one sink request. @default 1_048_576 */
  maxBatchBytes?: number
  /** How long a delivery lease lasts, in ms; a crashed holder's batches are picked up after it. @default 3 × timeoutMs + 5000 */
  leaseMs?: number
  /** How often instances announce themselves and adopt the outbox of dead ones, in ms. @default 10_000 */
  heartbeatMs?: number
  /** Make each ingest wait until its batch reached the sink (or `waitTimeoutMs` passed). @default false */
  wait?: boolean
  /** @default 10_000 */
  waitTimeoutMs?: number
}

/**
 * A batch the sink refused for good (a 4xx other than 408, 425 and 429), or the events of a batch
 * that a 200 answer listed as rejected (`rejected`, the sink's reasons with them).
 */
export interface DeadLetter {
  /** Outbox id; pass it to `requeue`. */
  id: string
  batch: string
  /** Events refused: the whole batch, or those in `rejected`. */
  events: number
  receivedAt: number
  status: number
  /** The start of the sink's answer. */
  body: string
  attempts: number
  failedAt: number
  /**
   * Only these events of the batch were refused, each with the sink's reasons: `index` is the
   * event's position in the stored batch (not in the sink request). Absent: the whole batch was.
   * `requeue` sends only these again.
   */
  rejected?: RefusedEvent[]
}

/** One event a sink listed as rejected in a 200 answer (event-ingest's `{accepted, duplicates, rejected}`). */
export interface RefusedEvent {
  /** Position in the stored batch. */
  index: number
  id?: string
  /** The sink's reasons, as it sent them (event-ingest sends `[{ path, message }]`). */
  errors: unknown
}

/** Delivery state for stats. */
export interface ForwardingState {
  sink: string
  /** Batches waiting in this instance's outbox queue. */
  backlog: number
  /** Events in them. */
  backlogEvents: number
  /** Age of the oldest pending batch, in ms; null when none. */
  oldestPendingMs: number | null
  deadLetters: number
  /** Attempts of the batch at the head of the queue. */
  attempts: number
  nextAttemptInMs: number | null
}

/** An outbox entry as the forwarder writes it: `only`, set by `requeue`, sends some events of the batch. */
interface ForwardEntry extends OutboxEntry {
  /** Positions in the stored batch of the events to send; absent: all of them. */
  only?: number[]
}

interface Pending extends ForwardEntry {
  key: string
  /** The lease value this instance holds on it, if any. */
  lease?: string
  /** Found undeliverable (leased by another instance, or no record yet): not looked at before this (ms). */
  notBefore?: number
}

interface Group {
  entries: Pending[]
  body: string
  events: number
  key: string
  /** The events sent of each entry, parallel to `entries`, in request order. */
  sent: unknown[][]
  /** Their positions in each stored batch, where an entry sends only some (`only`). */
  positions: (number[] | undefined)[]
}

/** The forwarder's public face. */
export interface Forwarder {
  /** Queues a batch just stored (its outbox entry is already durable). */
  enqueue(outboxKey: string, entry: OutboxEntry): Promise<boolean>
  state(): ForwardingState
  deadLetters(): Promise<DeadLetter[]>
  /** Moves dead letters (all, or those ids) back to the outbox. */
  requeue(ids?: readonly string[]): Promise<number>
  /** Stops taking work, waits for the attempt in flight (at most `timeoutMs`), leaves the rest in the outbox. */
  close(): Promise<void>
}

const RETRYABLE = new Set([408, 425, 429])

/** The default of every sink field that has one (`leaseMs` follows `timeoutMs`: see {@link resolveSinkOptions}). */
export const sinkDefaults = Object.freeze({
  tokenHeader: 'authorization',
  timeoutMs: 10_000,
  minBackoffMs: 500,
  maxBackoffMs: 60_000,
  maxRetryAfterMs: 600_000,
  maxBatchEvents: 1000,
  maxBatchBytes: 1_048_576,
  heartbeatMs: 10_000,
  wait: false,
  waitTimeoutMs: 10_000,
})

/** Sink options checked, with every default in place (`token` stays unset when none is given). */
export type ResolvedSinkOptions = Readonly<Required<Omit<SinkOptions, 'token' | 'headers'>> & { token?: string; headers: Readonly<Record<string, string>> }>

/**
 * Checks sink options and fills in their defaults, into a new frozen object (the one given is
 * never written to). `token` is used when the options carry none.
 */
export function resolveSinkOptions(sink: SinkOptions, token?: string): ResolvedSinkOptions {
  const { leaseMs } = checkSinkOptions(sink)
  return Object.freeze({
    ...sinkDefaults,
    ...definedFields(sink),
    url: sink.url,
    headers: Object.freeze({ ...sink.headers }),
    token: sink.token ?? token,
    leaseMs,
  })
}

/** The fields that are set: a field given as `undefined` takes its default. */
function definedFields<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>
}

/** Checks sink options up front; returns the lease length in force. */
function checkSinkOptions(sink: SinkOptions): { leaseMs: number } {
  if (typeof sink.url !== 'string' || !/^https?:\/\//.test(sink.url) || !URL.canParse(sink.url)) {
    throw new TypeError(`[event-ingest] sink url must be an http(s) URL like https://sink.example/events, got ${JSON.stringify(sink.url)}`)
  }
  for (const name of ['timeoutMs', 'minBackoffMs', 'maxBackoffMs', 'maxRetryAfterMs', 'leaseMs', 'heartbeatMs', 'waitTimeoutMs'] as const) {
    checkNumber(`sink.${name}`, sink[name], { max: MAX_TIMER_MS })
  }
  for (const name of ['maxBatchEvents', 'maxBatchBytes'] as const) checkNumber(`sink.${name}`, sink[name], { integer: true })
  checkString('sink.token', sink.token)
  checkBoolean('sink.wait', sink.wait)
  if (sink.tokenHeader !== undefined && (typeof sink.tokenHeader !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(sink.tokenHeader))) {
    throw new TypeError(`[event-ingest] sink.tokenHeader must be a header name, got ${shown(sink.tokenHeader)}`)
  }
  checkObject('sink.headers', sink.headers)
  for (const [name, value] of Object.entries(sink.headers ?? {})) {
    if (typeof value !== 'string') throw new TypeError(`[event-ingest] sink.headers[${JSON.stringify(name)}] must be a string, got ${shown(value)}`)
  }
  const timeoutMs = sink.timeoutMs ?? sinkDefaults.timeoutMs
  const leaseMs = sink.leaseMs ?? timeoutMs * 3 + 5000
  if (leaseMs <= timeoutMs) {
    // An attempt that outlives its lease could be made again by another instance at the same time.
    throw new TypeError(`[event-ingest] sink.leaseMs (${leaseMs}) must be longer than sink.timeoutMs (${timeoutMs})`)
  }
  return { leaseMs }
}

function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000
  const at = Date.parse(value)
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined
}

function failureKind(error: unknown): string {
  const name = (error as { name?: string; cause?: { name?: string } } | null)?.name
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout'
  const cause = (error as { cause?: { name?: string } } | null)?.cause?.name
  return cause === 'TimeoutError' || cause === 'AbortError' ? 'timeout' : 'network'
}

/**
 * Creates the forwarder: delivers outbox batches to the sink at least once, oldest first per
 * instance, with backoff, `Retry-After`, idempotency keys, dead letters and leases between
 * instances that share storage.
 */
export function createForwarder(options: {
  storage: Storage
  prefix: string
  instanceId: string
  sink: ResolvedSinkOptions
  stats: StatsWindow
  storageTimeoutMs: number
  onError?: (error: unknown) => void
}): Forwarder {
  const { storage, prefix, instanceId, sink, stats } = options
  const { timeoutMs, minBackoffMs: minBackoff, maxBackoffMs: maxBackoff, maxRetryAfterMs: maxRetryAfter, maxBatchEvents: maxEvents, maxBatchBytes: maxBytes, leaseMs, heartbeatMs } = sink
  const storageTimeout = options.storageTimeoutMs
  const onError = options.onError ?? (() => {})
  const claims = createClaimStore(storage, prefix)
  const outboxBase = `${prefix}:o`
  const registryKey = `${prefix}:fwd`
  const headers: Record<string, string> = { 'content-type': 'application/json', ...sink.headers }
  if (sink.token) {
    const name = sink.tokenHeader.toLowerCase()
    headers[name] = name === 'authorization' ? `Bearer ${sink.token}` : sink.token
  }

  const queue: Pending[] = []
  const known = new Set<string>()
  const waiters = new Map<string, (delivered: boolean) => void>()
  let group: Group | undefined
  /** Groups still to build with a single batch, after the sink refused a combined request. */
  let isolate = 0
  let attempts = 0
  let nextAttemptAt = 0
  // The wait until `nextAttemptAt` is only for the head to become deliverable (leased elsewhere, no
  // record yet), not a backoff after the sink failed: an entry enqueued meanwhile ends it. Entries
  // enqueued while the head is scanned are counted, so a scan that missed them does not wait.
  let headWait = false
  let enqueued = 0
  let deadLetterCount = 0
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined
  let inFlight: AbortController | undefined
  let closed = false

  const io = <T>(promise: Promise<T>, what: string) => withTimeout(promise, storageTimeout, what)
  const idOf = (key: string) => key.slice(outboxBase.length + 1)

  // Queue order is acceptance order: batch ids start with a fixed-width time, then the instance
  // and its sequence number.
  const order = (pending: Pending) => pending.key.slice(pending.key.lastIndexOf(':') + 1)

  function insert(pending: Pending) {
    if (known.has(pending.key)) return
    known.add(pending.key)
    const rank = order(pending)
    let index = queue.length
    while (index > 0 && order(queue[index - 1]!) > rank) index--
    queue.splice(index, 0, pending)
  }

  function schedule(delay: number) {
    if (closed) return
    clearTimeout(timer)
    timer = setTimeout(() => void pump(), Math.max(0, delay))
    timer.unref()
  }

  function pump(): Promise<void> {
    if (running || closed) return running ?? Promise.resolve()
    // Not an async function: `running` must be set before the loop can finish and clear it.
    const loop = async () => {
      await Promise.resolve()
      try {
        while (!closed && queue.length > 0) {
          const wait = nextAttemptAt - Date.now()
          if (wait > 0) {
            schedule(wait)
            return
          }
          await deliverHead()
        }
      } catch (error) {
        onError(error)
        attempts++
        nextAttemptAt = Date.now() + backoff()
        schedule(nextAttemptAt - Date.now())
      } finally {
        running = undefined
      }
    }
    running = loop()
    return running
  }

  function backoff(): number {
    const ceiling = Math.min(maxBackoff, minBackoff * 2 ** Math.min(attempts, 30))
    return Math.floor(Math.random() * ceiling) + Math.min(minBackoff, ceiling) / 2
  }

  async function buildGroup(): Promise<Group | undefined> {
    const entries: Pending[] = []
    // Each batch is serialised once; the request body is the batches' events joined.
    const parts: string[] = []
    const sent: unknown[][] = []
    const positions: (number[] | undefined)[] = []
    let events = 0
    let bytes = 2
    // A copy: `enqueue` and adoption insert into the queue during the awaits below, and an entry
    // inserted ahead of the current one would make the loop visit an entry twice and skip another.
    // Only the first maxEvents entries that may be deliverable (every batch holds at least one
    // event, so a group never takes more): a long backlog is not copied for each request. Entries
    // found undeliverable a moment ago are passed over without storage calls until they may have
    // changed, so however many of them sit at the head, the entries behind them go on.
    const now = Date.now()
    const candidates: Pending[] = []
    for (let i = 0; i < queue.length && candidates.length < maxEvents; i++) {
      const pending = queue[i]!
      if (pending.notBefore === undefined || pending.notBefore <= now) candidates.push(pending)
    }
    for (const pending of candidates) {
      if (entries.length > 0 && (isolate > 0 || events + pending.events > maxEvents)) break
      const leaseKey = `${prefix}:l:${idOf(pending.key)}`
      const lease = `${instanceId}|${Date.now() + leaseMs}`
      const [holder] = await io(claims.claim([leaseKey], lease, leaseMs), 'lease')
      if (holder !== null && holder !== undefined) {
        const [owner, until] = holder.split('|')
        if (owner !== instanceId && Number(until) > Date.now()) {
          // Another instance is delivering it right now.
          if (entries.length === 0) {
            pending.notBefore = Math.min(Number(until), Date.now() + 5000)
            continue
          }
          break
        }
        // Expired (or this instance's own): taken over by compare-and-set, so that of several
        // instances taking one expired lease at the same moment only one delivers the batch.
        const [won] = await io(claims.replace([leaseKey], [holder], lease, leaseMs), 'lease')
        if (!won) {
          // Another instance took it over (or released it) since it was read: its batch is left alone.
          if (entries.length === 0) {
            pending.notBefore = Date.now() + Math.min(leaseMs, 5000)
            continue
          }
          break
        }
      }
      pending.lease = lease
      if ((await io(storage.getItem(pending.key), 'read')) === null) {
        // Delivered meanwhile by its first owner or an adopter (even this instance's own entries are
        // adopted by another one that took it for dead).
        await io(claims.release([leaseKey], lease), 'lease').catch(() => {})
        drop(pending)
        continue
      }
      const record = parseRecord(await io(storage.getItem(pending.batch), 'read'), pending.batch)
      if (!record) {
        // No batch behind the entry: its write failed before it was acknowledged. Drop it once
        // that can no longer change.
        await io(claims.release([leaseKey], lease), 'lease').catch(() => {})
        pending.lease = undefined
        if (Date.now() - pending.receivedAt > storageTimeout * 4) {
          await io(storage.removeItem(pending.key), 'write')
          drop(pending)
        } else {
          // Looked at again when it can be dropped, or sooner, should its record land.
          pending.notBefore = Math.min(pending.receivedAt + storageTimeout * 4 + 1, Date.now() + 5000)
        }
        continue
      }
      const stored = record.events as unknown[]
      const picked = pending.only?.filter((index) => Number.isInteger(index) && index >= 0 && index < stored.length)
      const chosen = picked ? picked.map((index) => stored[index]) : stored
      const part = JSON.stringify(chosen).slice(1, -1)
      const size = Buffer.byteLength(part)
      if (entries.length > 0 && bytes + size > maxBytes) break
      bytes += size + 1
      entries.push(pending)
      sent.push(chosen)
      positions.push(picked)
      if (part) parts.push(part)
      events += chosen.length
    }
    if (entries.length === 0) return undefined
    if (isolate > 0) isolate--
    const key = createHash('sha256').update(entries.map((e) => e.key).join(',')).digest('hex').slice(0, 32)
    return { entries, body: `[${parts.join(',')}]`, events, key, sent, positions }
  }

  function drop(pending: Pending, delivered = false) {
    // Delivered batches leave from the head, in order: shift() is cheap there even for a long queue.
    if (queue[0] === pending) queue.shift()
    else {
      const index = queue.indexOf(pending)
      if (index >= 0) queue.splice(index, 1)
    }
    known.delete(pending.key)
    waiters.get(pending.key)?.(delivered)
    waiters.delete(pending.key)
  }

  async function releaseLeases(current: Group) {
    for (const pending of current.entries) {
      if (pending.lease) await io(claims.release([`${prefix}:l:${idOf(pending.key)}`], pending.lease), 'lease').catch(onError)
      pending.lease = undefined
    }
  }

  /** `refused`: entries with events refused in a 200 answer, which count as not delivered. */
  async function settleGroup(current: Group, delivered: boolean, refused?: ReadonlyMap<Pending, unknown>) {
    for (const pending of current.entries) {
      await io(storage.removeItem(pending.key), 'write')
      if (pending.lease) await io(claims.release([`${prefix}:l:${idOf(pending.key)}`], pending.lease), 'lease').catch(() => {})
      drop(pending, delivered && !refused?.has(pending))
    }
    group = undefined
    attempts = 0
    nextAttemptAt = 0
  }

  async function deliverHead(): Promise<void> {
    if (group && !(await renewLeases(group))) group = undefined
    headWait = false
    const seen = enqueued
    group ??= await buildGroup()
    const current = group
    if (!current) {
      // Everything at the head is leased by another instance or not yet readable: look again when
      // the first of them may have changed, or at once for entries enqueued during the scan.
      if (queue.length > 0 && enqueued === seen) {
        let soonest = Infinity
        for (const pending of queue) soonest = Math.min(soonest, pending.notBefore ?? 0)
        nextAttemptAt = Math.max(soonest, Date.now() + 50)
        headWait = true
      }
      return
    }
    const controller = new AbortController()
    inFlight = controller
    const timeout = setTimeout(() => controller.abort(new DOMException('sink attempt timed out', 'TimeoutError')), timeoutMs)
    let status = 0
    let retryAfter: number | undefined
    let text = ''
    try {
      // A fresh signal per attempt, and no ofetch retries: ofetch 1.5 would reuse an aborted signal.
      const response = await ofetch.raw(sink.url, {
        method: 'POST',
        body: current.body,
        headers: { ...headers, 'idempotency-key': current.key },
        retry: 0,
        signal: controller.signal,
        ignoreResponseError: true,
        responseType: 'text',
      })
      status = response.status
      text = typeof response._data === 'string' ? response._data : ''
      retryAfter = parseRetryAfter(response.headers.get('retry-after'), Date.now())
    } catch (error) {
      if (closed && controller.signal.aborted) return
      attempts++
      stats.recordForwardFailure(failureKind(error), Date.now())
      nextAttemptAt = Date.now() + backoff()
      return
    } finally {
      clearTimeout(timeout)
      inFlight = undefined
    }
    if (status >= 200 && status < 300) {
      // A 200 may still list events the sink rejected (event-ingest's own answer does): those were
      // not delivered, and become dead letters with the sink's reasons; the rest were.
      const refused = refusedEvents(text, current)
      let count = 0
      for (const list of refused.values()) count += list.length
      if (count < current.events) stats.recordForwarded(current.events - count, Date.now())
      if (refused.size > 0) {
        stats.recordForwardFailure('partial', Date.now())
        const failedAt = Date.now()
        for (const [pending, rejected] of refused) {
          await writeDeadLetter({
            id: idOf(pending.key), batch: pending.batch, events: rejected.length, receivedAt: pending.receivedAt,
            status, body: text.slice(0, 2048), attempts: attempts + 1, failedAt, rejected,
          })
        }
      }
      await settleGroup(current, true, refused)
      return
    }
    attempts++
    if (status >= 500 || RETRYABLE.has(status)) {
      stats.recordForwardFailure(status === 429 ? '429' : status >= 500 ? '5xx' : String(status), Date.now())
      const delay = retryAfter !== undefined ? Math.min(retryAfter, maxRetryAfter) : backoff()
      nextAttemptAt = Date.now() + delay
      return
    }
    if (current.entries.length > 1) {
      // One bad batch must not take its neighbours down: send the group's batches one by one,
      // so only the one the sink refuses becomes a dead letter.
      isolate = current.entries.length
      await releaseLeases(current)
      group = undefined
      attempts = 0
      nextAttemptAt = 0
      return
    }
    stats.recordForwardFailure('rejected', Date.now())
    const failedAt = Date.now()
    for (const pending of current.entries) {
      const letter: DeadLetter = {
        id: idOf(pending.key), batch: pending.batch, events: pending.events, receivedAt: pending.receivedAt,
        status, body: text.slice(0, 2048), attempts, failedAt,
      }
      // A batch sent in part (a requeued partial dead letter) stays in part.
      if (pending.only) letter.rejected = pending.only.map((index) => ({ index, errors: [] }))
      await writeDeadLetter(letter)
    }
    await settleGroup(current, false)
  }

  async function writeDeadLetter(letter: DeadLetter) {
    await io(storage.setItem(`${prefix}:x:${letter.id}`, JSON.stringify(letter)), 'write')
    deadLetterCount++
  }

  /**
   * The events a 2xx answer lists as rejected (`{ rejected: [{ index, id?, errors }] }`, `index`
   * counted in the request), by entry, with their positions in the stored batch. An entry whose
   * index is out of range is placed by its `id` where that names one event of the request; one
   * that names neither cannot be placed and is left out (the event counts as delivered).
   */
  function refusedEvents(text: string, current: Group): Map<Pending, RefusedEvent[]> {
    const refused = new Map<Pending, RefusedEvent[]>()
    if (!text.includes('"rejected"')) return refused
    const answer = safeParse(text) as { rejected?: unknown } | null
    const listed = answer && typeof answer === 'object' && Array.isArray(answer.rejected) ? answer.rejected : []
    if (listed.length === 0) return refused
    // Request position -> [entry, position in its stored batch, the event's id].
    const places: [number, number, unknown][] = []
    current.sent.forEach((events, entry) => {
      const positions = current.positions[entry]
      events.forEach((event, i) => places.push([entry, positions ? positions[i]! : i, (event as { id?: unknown } | null)?.id]))
    })
    const seen = new Set<number>()
    for (const item of listed) {
      if (typeof item !== 'object' || item === null) continue
      const { index, id, errors } = item as { index?: unknown; id?: unknown; errors?: unknown }
      let at = Number.isInteger(index) && (index as number) >= 0 && (index as number) < places.length ? (index as number) : -1
      if (at < 0 && typeof id === 'string') {
        const matches = places.flatMap(([, , eventId], i) => (eventId === id ? [i] : []))
        if (matches.length === 1) at = matches[0]!
      }
      if (at < 0 || seen.has(at)) continue
      seen.add(at)
      const [entry, position, eventId] = places[at]!
      const pending = current.entries[entry]!
      const event: RefusedEvent = { index: position, errors: errors ?? [] }
      if (typeof eventId === 'string') event.id = eventId
      const list = refused.get(pending)
      if (list) list.push(event)
      else refused.set(pending, [event])
    }
    for (const list of refused.values()) list.sort((a, b) => a.index - b.index)
    return refused
  }

  // Before each retry of a group: keep its leases while they still hold what this instance wrote,
  // by compare-and-set (a lease taken over meanwhile is never overwritten). A lease that expired or
  // changed hands meanwhile may have let another instance deliver the batch: then the group is
  // built again, which claims afresh and skips entries gone from the outbox.
  async function renewLeases(current: Group): Promise<boolean> {
    const keys = current.entries.map((p) => `${prefix}:l:${idOf(p.key)}`)
    const lease = `${instanceId}|${Date.now() + leaseMs}`
    const renewed = await io(claims.replace(keys, current.entries.map((p) => p.lease ?? ''), lease, leaseMs), 'lease')
    current.entries.forEach((pending, i) => {
      if (renewed[i]) pending.lease = lease
    })
    return renewed.every(Boolean)
  }

  function safeParse(text: string): { events?: unknown[] } | null {
    try {
      return JSON.parse(text)
    } catch {
      return null
    }
  }

  async function heartbeat() {
    const registry = ((await io(storage.getItem<Record<string, number>>(registryKey), 'read')) ?? {}) as Record<string, number>
    const now = Date.now()
    const dead = Object.entries(registry).filter(([id, seen]) => id !== instanceId && now - seen > Math.max(leaseMs, heartbeatMs * 3)).map(([id]) => id)
    registry[instanceId] = now
    // Everything no live instance delivers: the dead ones' outboxes, with the entries they had adopted
    // from instances that died before them (those keep their first owner's key). The dead leave the
    // registry only once that worked, so a failed adoption is tried again on the next beat.
    if (dead.length > 0) await adopt(outboxBase, new Set(Object.keys(registry).filter((id) => !dead.includes(id))))
    for (const id of dead) delete registry[id]
    await io(storage.setItem(registryKey, registry), 'write')
  }

  async function adopt(base: string, alive: ReadonlySet<string> = new Set()) {
    const keys = (await io(storage.getKeys(base), 'list')).sort()
    for (const key of keys) {
      if (known.has(key)) continue
      // Another live instance delivers its own outbox, in its own order.
      const owner = key.slice(outboxBase.length + 1).split(':')[0]!
      if (owner !== instanceId && alive.has(owner)) continue
      const entry = await io(storage.getItem<OutboxEntry>(key), 'read')
      const parsed = typeof entry === 'string' ? (safeParse(entry) as OutboxEntry | null) : entry
      if (!parsed || typeof parsed.batch !== 'string') continue
      insert({ ...parsed, key })
    }
  }

  async function tick() {
    try {
      await heartbeat()
    } catch (error) {
      onError(error)
    }
    void pump()
    if (!closed) {
      heartbeatTimer = setTimeout(() => void tick(), heartbeatMs)
      heartbeatTimer.unref()
    }
  }
  let heartbeatTimer: NodeJS.Timeout | undefined

  // Start: count dead letters, pick up every outbox entry left by earlier runs (the one scan; later
  // only dead instances' entries are listed), then announce ourselves.
  const started = (async () => {
    try {
      deadLetterCount = (await io(storage.getKeys(`${prefix}:x`), 'list')).length
      const registry = ((await io(storage.getItem<Record<string, number>>(registryKey), 'read')) ?? {}) as Record<string, number>
      const now = Date.now()
      const alive = new Set(Object.entries(registry).filter(([, seen]) => now - seen <= Math.max(leaseMs, heartbeatMs * 3)).map(([id]) => id))
      // Announce this instance before scanning, so instances starting meanwhile leave its batches alone.
      registry[instanceId] = now
      await io(storage.setItem(registryKey, registry), 'write')
      await adopt(outboxBase, alive)
    } catch (error) {
      onError(error)
    }
    await tick()
  })()

  return {
    async enqueue(outboxKey, entry) {
      const pending: Pending = { ...entry, key: outboxKey }
      if (known.has(outboxKey)) {
        // Known already (its record has landed meanwhile, say): looked at again now.
        const held = queue.find((p) => p.key === outboxKey)
        if (held) held.notBefore = undefined
      } else insert(pending)
      enqueued++
      // A batch to deliver now: no reason left to wait for the head.
      if (headWait) {
        headWait = false
        nextAttemptAt = 0
      }
      const delivered = sink.wait ? new Promise<boolean>((resolve) => waiters.set(outboxKey, resolve)) : undefined
      void started.then(() => pump())
      if (!delivered) return false
      let timer: NodeJS.Timeout | undefined
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), sink.waitTimeoutMs)))
      return Promise.race([delivered, timedOut]).finally(() => clearTimeout(timer))
    },
    state() {
      const now = Date.now()
      return {
        sink: sink.url,
        backlog: queue.length,
        backlogEvents: queue.reduce((n, p) => n + p.events, 0),
        oldestPendingMs: queue.length > 0 ? now - queue.reduce((oldest, p) => Math.min(oldest, p.receivedAt), Infinity) : null,
        deadLetters: deadLetterCount,
        attempts,
        nextAttemptInMs: queue.length > 0 ? Math.max(0, nextAttemptAt - now) : null,
      }
    },
    async deadLetters() {
      const keys = (await io(storage.getKeys(`${prefix}:x`), 'list')).sort()
      const letters: DeadLetter[] = []
      for (const key of keys) {
        const value = await io(storage.getItem<DeadLetter>(key), 'read')
        const letter = typeof value === 'string' ? (safeParse(value) as DeadLetter | null) : value
        if (letter) letters.push(letter)
      }
      return letters
    },
    async requeue(ids) {
      const letters = (await this.deadLetters()).filter((l) => !ids || ids.includes(l.id))
      for (const letter of letters) {
        const key = `${outboxBase}:${letter.id}`
        const entry: ForwardEntry = { batch: letter.batch, events: letter.events, receivedAt: letter.receivedAt }
        if (Array.isArray(letter.rejected)) entry.only = letter.rejected.map((event) => event.index)
        await io(storage.setItem(key, JSON.stringify(entry)), 'write')
        await io(storage.removeItem(`${prefix}:x:${letter.id}`), 'write')
        deadLetterCount = Math.max(0, deadLetterCount - 1)
        insert({ ...entry, key })
      }
      void pump()
      return letters.length
    },
    async close() {
      if (closed) return
      closed = true
      clearTimeout(timer)
      clearTimeout(heartbeatTimer)
      await started.catch(() => {})
      // The attempt in flight may finish (and its batch leave the outbox); past the attempt timeout
      // it is aborted and stays in the outbox for the next start. Nothing is lost either way.
      const current = running
      if (current) {
        const limit = setTimeout(() => inFlight?.abort(new DOMException('closing', 'AbortError')), timeoutMs)
        await current.catch(() => {})
        clearTimeout(limit)
      }
      for (const resolve of waiters.values()) resolve(false)
      waiters.clear()
      if (group) {
        for (const pending of group.entries) {
          if (pending.lease) await io(claims.release([`${prefix}:l:${idOf(pending.key)}`], pending.lease), 'lease').catch(onError)
        }
      }
      // Mark this instance as gone (last seen at 0), so that another instance adopts what is left here
      // at its next heartbeat instead of waiting for this one to go stale. (Deleting the entry would
      // hide it from heartbeats: only listed instances are ever found dead.)
      try {
        const registry = ((await io(storage.getItem<Record<string, number>>(registryKey), 'read')) ?? {}) as Record<string, number>
        registry[instanceId] = 0
        await io(storage.setItem(registryKey, registry), 'write')
      } catch (error) {
        onError(error)
      }
    },
  }
}
