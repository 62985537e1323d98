import type { CanonicalEvents, EventDefinitions, EventSource } from '../model/definitions'
import { batchBody, batchBytes, defaultLimits, fits, nextBatchSize, queued, type BatchLimits, type QueuedEvent } from './queue'
import { isRetryableStatus, resolveRetry, retryDelay, type ResolvedRetry } from './retry'
import { sendBatch, sendBeacon, type Transport } from './transport'
import { ENVELOPE_VERSION, EventClientError, type ClientEnvelope, type EventClient, type EventClientOptions, type QueueStorage, type TrackOptions } from './types'

/** A page's keepalive budget: every keepalive request in flight shares 64 KiB. Kept under it with room for the URL. */
const BEACON_BUDGET = 60_000

/** Everything a client holds, in one place. */
interface ClientState {
  /** Events waiting to be sent, oldest first. */
  queue: QueuedEvent[]
  /** The batch being sent, if any. */
  inFlight: QueuedEvent[]
  /** Bytes of the queued events' JSON, kept as the queue changes. */
  queuedBytes: number
  /** The running send loop, if any. */
  draining: Promise<void> | undefined
  /** The interval flush, armed when the first event is queued. */
  timer: ReturnType<typeof setTimeout> | undefined
  /** The server's limits, once `GET /events/schema` answered. */
  serverLimits: BatchLimits | undefined
  /** When the schema may be asked for again, after it failed. */
  schemaRetryAt: number
  /** Queued events read back from storage, until they are in the queue. */
  loaded: Promise<void>
  closed: boolean
  /** `close()` ran out of time: pending events are reported, not sent. */
  abandoned: boolean
  /** Ends the current backoff wait, or aborts the attempt in flight (when `close()` runs out of time). */
  wake: (() => void) | undefined
  /** The storage write running, if any, and whether the queue changed since it began. */
  saving: Promise<void> | undefined
  dirty: boolean
  /** Removes the page listeners. */
  unlisten: (() => void) | undefined
}

/** Options as the client uses them: every default filled in, once. */
interface Settings {
  source: EventSource
  schemaVersion: number
  flushAt: number
  flushInterval: number
  maxBatchBytes: number
  maxQueue: number
  requestTimeout: number
  retry: ResolvedRetry
  schemaUrl: string
  transport: Transport
  onError: (error: EventClientError) => void
  storage: QueueStorage | undefined
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !(value > 0)) throw new RangeError(`[event-ingest/client] ${name} must be a positive number, got ${String(value)}`)
  return value
}

function resolveSettings(options: EventClientOptions<EventDefinitions>): Settings {
  if (typeof options.endpoint !== 'string' || options.endpoint === '') throw new TypeError('[event-ingest/client] endpoint must be the URL event-ingest is mounted at')
  if (typeof options.source !== 'string') throw new TypeError('[event-ingest/client] source is required')
  const base = new URL(options.endpoint.replace(/\/+$/, '') + '/', (globalThis as { location?: { href: string } }).location?.href)
  const fetcher = options.fetch ?? globalThis.fetch
  if (typeof fetcher !== 'function') throw new TypeError('[event-ingest/client] no fetch: pass one as the fetch option')
  return {
    source: options.source,
    schemaVersion: options.model?.schemaVersion ?? ENVELOPE_VERSION,
    flushAt: positive('flushAt', options.flushAt, 20),
    flushInterval: positive('flushInterval', options.flushInterval, 5000),
    maxBatchBytes: positive('maxBatchBytes', options.maxBatchBytes, 524_288),
    maxQueue: positive('maxQueue', options.maxQueue, 10_000),
    requestTimeout: positive('requestTimeout', options.requestTimeout, 10_000),
    retry: resolveRetry(options.retry),
    schemaUrl: new URL('events/schema', base).href,
    transport: {
      ingestUrl: new URL('events/ingest', base).href,
      token: options.token,
      key: options.key,
      threshold: options.compression === false ? false : (options.compression?.threshold ?? 1024),
      fetch: fetcher.bind(globalThis),
    },
    onError: options.onError ?? ((error) => console.warn(error.message)),
    storage: options.storage,
  }
}


/**
 * A random UUID (v4). `crypto.randomUUID` exists only in secure contexts (https, localhost): a page
 * served over plain http gets the same from `crypto.getRandomValues`.
 */
export function randomId(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID()
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = (bytes[6]! & 0x0f) | 0x40
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

function isoTime(value: Date | string | number | undefined): string {
  if (value === undefined) return new Date().toISOString()
  if (typeof value === 'string') return value
  return new Date(value).toISOString()
}

/**
 * Creates a client that queues events, sends them in batches under the server's limits, retries
 * what may be retried (ids are kept, so a retry is never stored twice) and reports the rest.
 *
 * @example
 * import { createEventClient } from 'event-ingest/client'
 *
 * const events = createEventClient({ endpoint: 'https://shop.example.com/api', token: process.env.EVENT_INGEST_TOKEN, source: 'api' })
 * events.track('OrderCreated', { orderId: 'ord_1', total: 59.9 }, { companyId: 'co_42' })
 * await events.close()
 */
export function createEventClient<D extends EventDefinitions = CanonicalEvents>(options: EventClientOptions<D>): EventClient<D> {
  const settings = resolveSettings(options as EventClientOptions<EventDefinitions>)
  const state: ClientState = { queue: [], queuedBytes: 0, inFlight: [], draining: undefined, timer: undefined, serverLimits: undefined, schemaRetryAt: 0, loaded: Promise.resolve(), closed: false, abandoned: false, wake: undefined, saving: undefined, dirty: false, unlisten: undefined }
  const report = (error: EventClientError) => {
    try {
      settings.onError(error)
    } catch {
      // A throwing onError must not stop the queue.
    }
  }

  /** Saves the queue: one write at a time, the newest state last (writes of a file must not overlap). */
  const persist = () => {
    const storage = settings.storage
    // After close() ran out of time the storage keeps the last queue saved: the next start sends it.
    if (!storage || state.abandoned) return
    state.dirty = true
    state.saving ??= (async () => {
      while (state.dirty) {
        state.dirty = false
        try {
          await storage.save([...state.inFlight, ...state.queue].map((item) => item.event))
        } catch (error) {
          report(new EventClientError('storage', `saving the queue failed: ${String(error)}`, []))
        }
      }
      state.saving = undefined
    })()
  }

  const recount = () => {
    state.queuedBytes = state.queue.reduce((sum, item) => sum + item.bytes, 0)
  }

  const enqueue = (items: QueuedEvent[]) => {
    state.queue.push(...items)
    for (const item of items) state.queuedBytes += item.bytes
    const over = state.queue.length + state.inFlight.length - settings.maxQueue
    if (over > 0) {
      const dropped = state.queue.splice(0, over)
      recount()
      report(new EventClientError('queue_full', `the queue is full (maxQueue ${settings.maxQueue}): dropped the ${dropped.length} oldest`, dropped.map((item) => item.event)))
    }
    persist()
    if (state.queue.length >= settings.flushAt || state.queuedBytes + state.queue.length + 1 >= settings.maxBatchBytes) void drain()
    else if (state.timer === undefined && state.queue.length > 0) {
      state.timer = setTimeout(() => {
        state.timer = undefined
        void drain()
      }, settings.flushInterval)
      ;(state.timer as { unref?: () => void }).unref?.()
    }
  }

  if (settings.storage) {
    state.loaded = Promise.resolve()
      .then(() => settings.storage!.load())
      .then((events) => {
        if (events?.length) enqueue(events.map(queued))
      })
      .catch((error) => report(new EventClientError('storage', `loading the queue failed: ${String(error)}`, [])))
  }

  const limits = async (): Promise<BatchLimits> => {
    if (!state.serverLimits && Date.now() >= state.schemaRetryAt) {
      // Asked once a minute at most while it fails (a host may not serve the schema route).
      state.schemaRetryAt = Date.now() + 60_000
      try {
        const response = await settings.transport.fetch(settings.schemaUrl, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(settings.requestTimeout) })
        const published = response.ok ? ((await response.json()) as { limits?: Partial<BatchLimits> }).limits : undefined
        if (published) state.serverLimits = { ...defaultLimits, ...published }
      } catch {
        // The server's defaults until the schema answers; a 413 still splits a batch.
      }
    }
    const server = state.serverLimits ?? defaultLimits
    return { maxBodyBytes: Math.min(server.maxBodyBytes, settings.maxBatchBytes), maxEvents: server.maxEvents, maxEventBytes: server.maxEventBytes }
  }

  /**
   * Sends one batch until it is delivered or reported; returns events to put back in front, and
   * whether batches must get smaller (a 413 under the published limits).
   */
  const deliver = async (batch: QueuedEvent[]): Promise<{ back: QueuedEvent[]; smaller?: boolean }> => {
    const body = batchBody(batch)
    for (let attempt = 1; ; attempt++) {
      const controller = new AbortController()
      const timer = setTimeout(() => controller.abort(new Error(`no answer within ${settings.requestTimeout} ms`)), settings.requestTimeout)
      state.wake = () => controller.abort(new Error('close() ran out of time'))
      const outcome = await sendBatch(settings.transport, body, batchBytes(batch), controller.signal)
      clearTimeout(timer)
      state.wake = undefined
      if (outcome.kind === 'ok') {
        const rejected = outcome.body?.rejected ?? []
        if (rejected.length > 0) {
          report(new EventClientError('rejected', `the server rejected ${rejected.length} event(s): ${rejected[0]!.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, rejected.map((r) => batch[r.index]?.event).filter((e) => e !== undefined), outcome.status, rejected))
        }
        return { back: [] }
      }
      const status = outcome.kind === 'http' ? outcome.status : 0
      if (state.abandoned) {
        report(new EventClientError('closed', `close() ran out of time: ${batch.length} event(s) not delivered`, batch.map((item) => item.event), status || undefined))
        return { back: [] }
      }
      if (outcome.kind === 'http' && !isRetryableStatus(status)) {
        const code = outcome.body?.code
        if (status === 413 && code === 'event_too_large' && typeof outcome.body?.index === 'number') {
          const [tooLarge] = batch.splice(outcome.body.index, 1)
          report(new EventClientError('event_too_large', String(outcome.body.message ?? 'event too large'), tooLarge ? [tooLarge.event] : [], status, outcome.body))
          return { back: batch }
        }
        if (status === 413 && batch.length > 1) {
          // The server's limits are tighter than published (or changed): halve and send again.
          return { back: batch, smaller: true }
        }
        report(new EventClientError('refused', `the server refused ${batch.length} event(s) with ${status}${code ? ` ${String(code)}` : ''}: ${String(outcome.body?.message ?? '')}`, batch.map((item) => item.event), status, outcome.body))
        return { back: [] }
      }
      if (attempt >= settings.retry.attempts) {
        const why = outcome.kind === 'network' ? String(outcome.error) : `status ${status}`
        report(new EventClientError('retries_exhausted', `${batch.length} event(s) not delivered after ${attempt} attempt(s) (${why})`, batch.map((item) => item.event), status || undefined))
        return { back: [] }
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, retryDelay(settings.retry, attempt, outcome.kind === 'http' ? outcome.retryAfter : null))
        state.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      state.wake = undefined
      if (state.abandoned) {
        report(new EventClientError('closed', `close() ran out of time: ${batch.length} event(s) not delivered`, batch.map((item) => item.event), status || undefined))
        return { back: [] }
      }
    }
  }

  const runDrain = async () => {
    await state.loaded
    while (state.queue.length > 0) {
      if (state.abandoned) {
        const left = state.queue.splice(0)
        recount()
        report(new EventClientError('closed', `close() ran out of time: ${left.length} event(s) not sent`, left.map((item) => item.event)))
        break
      }
      const current = await limits()
      // An event that can never fit is reported and removed: it never blocks the queue.
      const tooLarge = state.queue.filter((item) => !fits(item, current))
      if (tooLarge.length > 0) {
        state.queue = state.queue.filter((item) => fits(item, current))
        recount()
        report(new EventClientError('event_too_large', `${tooLarge.length} event(s) over the limit (maxEventBytes ${current.maxEventBytes}, body ${current.maxBodyBytes})`, tooLarge.map((item) => item.event)))
        continue
      }
      const size = nextBatchSize(state.queue, current)
      state.inFlight = state.queue.splice(0, size)
      recount()
      const { back, smaller } = await deliver(state.inFlight)
      if (smaller) state.serverLimits = { ...current, maxEvents: Math.max(1, Math.ceil(back.length / 2)) }
      if (back.length > 0) {
        // What was not sent goes back in front, in order.
        state.queue.unshift(...back)
        recount()
      }
      state.inFlight = []
      persist()
    }
  }

  const drain = (): Promise<void> => {
    if (state.timer !== undefined) {
      clearTimeout(state.timer)
      state.timer = undefined
    }
    state.draining ??= runDrain().finally(() => {
      state.draining = undefined
    })
    return state.draining
  }

  const flush = async (): Promise<void> => {
    await state.loaded
    while (state.queue.length > 0 || state.draining) await drain()
  }

  /**
   * The page is hidden or left: what is queued goes out in beacons, within the keepalive budget.
   * A batch in flight (or waiting to be retried) goes too: the page may never see its answer, and
   * its ids make a second copy harmless.
   */
  const beacon = () => {
    let budget = BEACON_BUDGET
    const current = state.serverLimits ?? defaultLimits
    const sendFrom = (items: QueuedEvent[]): number => {
      let sent = 0
      while (sent < items.length) {
        const rest = items.slice(sent)
        const size = nextBatchSize(rest, { ...current, maxBodyBytes: Math.min(budget, current.maxBodyBytes, settings.maxBatchBytes) })
        if (size === 0) break
        const batch = rest.slice(0, size)
        if (!sendBeacon(settings.transport, batchBody(batch))) break
        budget -= batchBytes(batch)
        sent += size
      }
      return sent
    }
    sendFrom(state.inFlight)
    const sent = sendFrom(state.queue)
    if (sent === 0) return
    state.queue.splice(0, sent)
    recount()
    persist()
  }

  const doc = (globalThis as { document?: Document }).document
  if (doc && options.beacon !== false && typeof addEventListener === 'function') {
    const onHidden = () => {
      if (doc.visibilityState === 'hidden') beacon()
    }
    doc.addEventListener('visibilitychange', onHidden)
    addEventListener('pagehide', beacon)
    state.unlisten = () => {
      doc.removeEventListener('visibilitychange', onHidden)
      removeEventListener('pagehide', beacon)
    }
  }

  return {
    track(name, payload, trackOptions: TrackOptions = {}) {
      const event: ClientEnvelope = {
        id: trackOptions.id ?? randomId(),
        name,
        schemaVersion: settings.schemaVersion,
        occurredAt: isoTime(trackOptions.occurredAt),
        source: settings.source,
        ...(trackOptions.companyId === undefined ? {} : { companyId: trackOptions.companyId }),
        ...(trackOptions.subjectId === undefined ? {} : { subjectId: trackOptions.subjectId }),
        payload: payload as Record<string, unknown>,
      }
      if (state.closed) report(new EventClientError('closed', `track("${name}") after close(): not sent`, [event]))
      else enqueue([queued(event)])
      return event.id
    },
    flush,
    async close(closeOptions = {}) {
      state.closed = true
      state.unlisten?.()
      state.unlisten = undefined
      const timeoutMs = closeOptions.timeoutMs
      if (timeoutMs === undefined) await flush()
      else {
        let timer: ReturnType<typeof setTimeout> | undefined
        const outOfTime = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            state.abandoned = true
            state.wake?.()
            resolve()
          }, timeoutMs)
        })
        await Promise.race([flush(), outOfTime])
        clearTimeout(timer)
        // The attempt in flight, if any, ends by itself (its batch is reported unless it lands).
        if (state.abandoned) await flush()
      }
      await state.saving
    },
    get size() {
      return state.queue.length + state.inFlight.length
    },
  }
}
