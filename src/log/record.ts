import type { Storage } from 'unstorage'
import { withTimeout } from '../base/timeout'
import type { EventEnvelope } from '../model/model'
import { parseBatchKey } from '../storage/layout'
import type { BatchRecord, RawBatch } from './types'

const utf8 = new TextDecoder()

/**
 * A batch record read back from `key`, or null when it is missing or unreadable (a torn write).
 * A record is JSON text (`{"v":1,"receivedAt":…,"instance":…,"events":[…]}`), or, as the memory
 * driver keeps it, the events array exactly as received (bytes, or text once copied elsewhere),
 * whose time and instance the key names.
 */
export function parseRecord(raw: unknown, key: string): BatchRecord | null {
  let value: unknown = raw instanceof Uint8Array ? utf8.decode(raw) : raw
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      return null
    }
  }
  if (Array.isArray(value)) {
    const head = parseBatchKey(key)
    return head ? { v: 1, receivedAt: head.receivedAt, instance: head.instance, events: value as EventEnvelope[] } : null
  }
  if (typeof value !== 'object' || value === null) return null
  const record = value as BatchRecord
  if (record.v !== 1 || typeof record.receivedAt !== 'number' || !Array.isArray(record.events)) return null
  if (record.skewMs !== undefined && !Number.isFinite(record.skewMs)) delete record.skewMs
  return record
}

/**
 * The record of a batch as text: the text as received when all of its events are stored unchanged
 * (no second serialisation on the hot path), else the stored events serialised.
 */
export function recordText(receivedAt: number, instance: string, raw: RawBatch | undefined, events: readonly EventEnvelope[], positions?: readonly number[], skewMs?: number): string {
  const skew = skewMs === undefined ? '' : `"skewMs":${skewMs},`
  if (raw !== undefined && positions === undefined) return `{"v":1,"receivedAt":${receivedAt},"instance":${JSON.stringify(instance)},${skew}"events":${raw.text}}`
  return JSON.stringify({ v: 1, receivedAt, instance, ...(skewMs === undefined ? {} : { skewMs }), events: positions ? positions.map((p) => events[p]!) : (events as EventEnvelope[]) } satisfies BatchRecord)
}

/**
 * The body's own bytes as the record (the events array as received, whose time and instance the
 * key names: see parseRecord), when every event is stored and the receive time fits a key; a copy
 * unless nothing else holds them. Undefined when the record must be text (a batch with a skew
 * correction carries it in the text's header).
 */
export function recordBytes(receivedAt: number, raw: RawBatch | undefined, positions?: readonly number[], skewMs?: number): Uint8Array | undefined {
  if (raw?.bytes === undefined || positions !== undefined || skewMs !== undefined || !Number.isSafeInteger(receivedAt) || receivedAt < 0) return undefined
  const bytes = raw.bytes
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
  return raw.owned && whole ? bytes : Buffer.from(bytes)
}

/** Reads batch records back, bounded by the storage timeout, counting those found unreadable. */
export class RecordReader {
  /** Records found unreadable (a torn write): skipped, never served. */
  corrupt = 0

  constructor(private readonly storage: Storage, private readonly timeoutMs: number) {}

  async read(key: string): Promise<BatchRecord | null> {
    const raw = await withTimeout(this.storage.getItem(key), this.timeoutMs, 'read')
    if (raw === null || raw === undefined) return null
    const record = parseRecord(raw, key)
    if (!record) this.corrupt++
    return record
  }
}
