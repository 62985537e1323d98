import { IngestError } from '../base/errors'
import { withTimeout } from '../base/timeout'
import { batchBase, batchTime, hourBase, hourBucket, parseClaim } from '../storage/layout'
import type { LogContext } from './context'
import type { EventEnvelope } from '../model/model'
import type { BatchRecord, EventPage, EventQuery, StoredEvent } from './types'

const HOUR = 3_600_000

export function toMs(value: number | Date | undefined, fallback: number): number {
  if (value === undefined) return fallback
  return typeof value === 'number' ? value : value.getTime()
}

/** A page cursor: the batch key and event index it stopped at, as base64url. */
function parseCursor(cursor: string, base: string): { key: string; index: number } {
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8')
  const split = decoded.lastIndexOf('|')
  const index = Number(decoded.slice(split + 1))
  if (split < 0 || !decoded.startsWith(`${base}:`) || !Number.isInteger(index)) {
    throw new IngestError('invalid_query', 'cursor: not a cursor returned by this API')
  }
  return { key: decoded.slice(0, split), index }
}

const newestFirst = (a: string, b: string) => (batchTime(b) - batchTime(a)) || (a < b ? 1 : a > b ? -1 : 0)

/** Lists stored events, newest first, a page at a time, visiting only the indexed hours in range. */
export async function listEvents(context: LogContext, query: EventQuery = {}): Promise<EventPage> {
  const { storage, timeoutMs } = context
  const base = batchBase(context.prefix)
  const until = toMs(query.until, context.now() + 1)
  const since = toMs(query.since, until - 7 * 24 * HOUR)
  const limit = Math.min(Math.max(1, Math.floor(query.limit ?? 100)), 1000)
  const after = query.cursor ? parseCursor(query.cursor, base) : undefined
  const firstHour = hourBucket(after ? Math.min(until, batchTime(after.key)) : until)
  const lastHour = hourBucket(since)
  const hours = (await context.hours.read()).filter((h) => h <= firstHour && h >= lastHour).sort().reverse()
  const events: StoredEvent[] = []
  const cursors: string[] = []
  for (const hour of hours) {
    const keys = (await withTimeout(storage.getKeys(hourBase(context.prefix, hour)), timeoutMs, 'list')).sort(newestFirst)
    for (const key of keys) {
      if (after && newestFirst(key, after.key) < 0) continue
      const time = batchTime(key)
      if (time >= until || time < since) continue
      const record = await context.records.read(key)
      if (!record) continue
      for (let index = record.events.length - 1; index >= 0; index--) {
        if (after && key === after.key && index >= after.index) continue
        const event = record.events[index]!
        if (query.name && event.name !== query.name) continue
        if (query.source && event.source !== query.source) continue
        if (events.length === limit) return { events, nextCursor: cursors.at(-1)! }
        events.push(storedEvent(event, record))
        cursors.push(Buffer.from(`${key}|${index}`).toString('base64url'))
      }
    }
  }
  return { events, nextCursor: null }
}

/** Reads one stored event by id, through its dedupe claim (so within the dedupe window). */
export async function getEvent(context: LogContext, id: string): Promise<StoredEvent | null> {
  const [value] = await withTimeout(context.claims.read([id]), context.timeoutMs, 'read')
  const batchKey = value ? parseClaim(value).batch : ''
  if (!batchKey) return null
  const record = await context.records.read(batchKey)
  const event = record?.events.find((e) => e.id === id)
  return event && record ? storedEvent(event, record) : null
}

/** An event as served: with its batch's receive time, and its corrected time where its batch had one. */
function storedEvent(event: EventEnvelope, record: BatchRecord): StoredEvent {
  const stored: StoredEvent = { ...event, receivedAt: new Date(record.receivedAt).toISOString() }
  if (record.skewMs === undefined) return stored
  const corrected = Date.parse(event.occurredAt) + record.skewMs
  if (Number.isFinite(corrected) && Math.abs(corrected) <= 8.64e15) stored.correctedOccurredAt = new Date(corrected).toISOString()
  stored.clockSkewMs = record.skewMs
  return stored
}

const oldestFirst = (a: string, b: string) => (batchTime(a) - batchTime(b)) || (a < b ? -1 : a > b ? 1 : 0)

/**
 * The batch records received in `[since, until)`, oldest first, visiting only the indexed hours in
 * range (for replay). A record gone or unreadable is passed over.
 */
export async function* scanBatches(context: LogContext, since: number, until: number): AsyncGenerator<{ key: string; record: BatchRecord }> {
  const { storage, timeoutMs } = context
  const first = hourBucket(since)
  const last = hourBucket(until)
  const hours = (await context.hours.read()).filter((h) => h >= first && h <= last).sort()
  for (const hour of hours) {
    const keys = (await withTimeout(storage.getKeys(hourBase(context.prefix, hour)), timeoutMs, 'list')).sort(oldestFirst)
    for (const key of keys) {
      const time = batchTime(key)
      if (time >= until || time < since) continue
      const record = await context.records.read(key)
      if (record) yield { key, record }
    }
  }
}
