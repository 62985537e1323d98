import { createHash } from 'node:crypto'

/**
 * Turns an event id into a storage key segment that no other id can produce and that every
 * unstorage driver keeps intact: unstorage cuts keys at `?` and turns `/` into `:`, and file
 * systems may fold case, so ids are never used raw. Short ids become lowercase hex of their UTF-8
 * bytes (`x…`), long ones a SHA-256 of them (`h…`). An id with a lone surrogate (JSON allows
 * `"\ud800"`) has no UTF-8 of its own (it would become U+FFFD and meet another id), so it is
 * encoded from its UTF-16 code units instead (`u…`, or `v…` hashed). No two forms can meet.
 */
export function idKey(id: string): string {
  const wellFormed = (id as string & { isWellFormed(): boolean }).isWellFormed()
  const bytes = Buffer.from(id, wellFormed ? 'utf8' : 'utf16le')
  if (bytes.length <= 100) return `${wellFormed ? 'x' : 'u'}${bytes.toString('hex')}`
  return `${wellFormed ? 'h' : 'v'}${createHash('sha256').update(bytes).digest('hex')}`
}

/**
 * Whether unstorage's key normalisation leaves `key` from `start` on as it is: not empty, no `?`,
 * `/` or `\`, no empty segment, no `:` at either end. The log's own keys are so; checking is
 * cheaper than normalising.
 */
export function isNormalKey(key: string, start = 0): boolean {
  if (start >= key.length || key.charCodeAt(start) === 0x3a || key.charCodeAt(key.length - 1) === 0x3a) return false
  for (let i = start; i < key.length; i++) {
    const c = key.charCodeAt(i)
    if (c === 0x3f || c === 0x2f || c === 0x5c || (c === 0x3a && key.charCodeAt(i + 1) === 0x3a)) return false
  }
  return true
}

// The last hour formatted: nearly every call of a process falls in the same hour.
let cachedHour = { from: 0, to: 0, text: '' }

/** The UTC hour bucket of a time, `YYYYMMDDHH`: events are partitioned by the hour they arrived. */
export function hourBucket(ms: number): string {
  if (ms >= cachedHour.from && ms < cachedHour.to) return cachedHour.text
  const d = new Date(ms)
  const text = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}`
  // Only a real date's hour is kept (past the Date range, the hour's start may still be in it).
  if (Number.isNaN(d.getTime()) || !Number.isInteger(ms)) return text
  const from = ms - (((ms % 3_600_000) + 3_600_000) % 3_600_000)
  cachedHour = { from, to: from + 3_600_000, text }
  return text
}


function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n)
}

/*
 * The event log's keys, each shape written and parsed here only:
 *
 *   batch record   <prefix>:b:<YYYYMMDDHH>:<time36>-<instance>-<logToken><seq36>
 *                  (an hour's records share the base <prefix>:b:<YYYYMMDDHH>)
 *   outbox entry   <prefix>:o:<instance>:<time36>-<instance>-<logToken><seq36>
 *   hour index     <prefix>:hours
 *   dedupe claim   <prefix>:d:<idKey(id)>, holding `<batch key>|<claimed at, ms>`
 *   process        <prefix>:p:<instance>-<logToken>, the identity of the process of one log
 *
 * The forwarder's, under the log's prefix (an outbox id is `<instance>:<batch id>`, the outbox
 * key without its base):
 *
 *   delivery lease <prefix>:l:<outbox id>, holding `<instance>|<held until, ms>`
 *   dead letter    <prefix>:x:<outbox id>
 *
 * The ingest route's rate limits (src/http/rate-limits.ts), on Redis only, each key a counter that
 * rate-limiter-flexible keeps and expires:
 *
 *   rate limit     <prefix>:r:<limit name>:<address | token digest | source>
 *
 * An instance registry's (src/storage/registry.ts), under its own prefix:
 *
 *   on Redis       <prefix>:seen, a hash of instance id to last seen (ms)
 *   elsewhere      <prefix>:seen:<instance>, holding last seen (ms)
 */

/** The base of every batch record: `<prefix>:b`. */
export function batchBase(prefix: string): string {
  return `${prefix}:b`
}

/** The base of one hour bucket's batch records: `<prefix>:b:<YYYYMMDDHH>`. */
export function hourBase(prefix: string, hour: string): string {
  return `${batchBase(prefix)}:${hour}`
}

/** The base of one rate limit's counters (`perAddress`, `perToken`, `perSource`): `<prefix>:r:<limit>`. */
export function rateLimitBase(prefix: string, limit: string): string {
  return `${prefix}:r:${limit}`
}

/** The base of every dedupe claim: `<prefix>:d`. */
export function claimBase(prefix: string): string {
  return `${prefix}:d`
}

/** The key of the hour index: `<prefix>:hours`. */
export function hoursKey(prefix: string): string {
  return `${prefix}:hours`
}

/** The storage key of an id's dedupe claim under `base` (`<prefix>:d`): `<base>:<idKey(id)>`. */
export function claimKey(base: string, id: string): string {
  return `${base}:${idKey(id)}`
}

/**
 * The key of a batch record: `<prefix>:b:<hour>:<time36>-<instance>-<token><seq36>`. The time is
 * fixed-width first, so keys sort in acceptance order within an instance; the sequence, after a
 * token of the log that made it, tells a batch of this log from one of an earlier process with
 * the same instance id.
 */
export function batchKey(prefix: string, receivedAt: number, instance: string, token: string, sequence: number): string {
  return `${batchKeyHead(prefix, receivedAt, instance, token)}${batchSequence(sequence)}`
}

/** The end of a {@link batchKey}: its sequence, padded to 6 base-36 digits. */
export function batchSequence(sequence: number): string {
  return sequence.toString(36).padStart(6, '0')
}

/** A {@link batchKey} up to its sequence: the same for every batch of one log received in one millisecond. */
export function batchKeyHead(prefix: string, receivedAt: number, instance: string, token: string): string {
  return `${hourBase(prefix, hourBucket(receivedAt))}:${receivedAt.toString(36).padStart(9, '0')}-${instance}-${token}`
}

/** What a batch key names. */
export interface BatchKeyParts {
  /** When the batch was received (ms). */
  receivedAt: number
  instance: string
  /** The log token and sequence, as one segment. */
  sequence: string
}

/**
 * The receive time, instance and sequence a batch key names (`…:<time36>-<instance>-<sequence>`);
 * null when the key is not a batch key.
 */
export function parseBatchKey(key: string): BatchKeyParts | null {
  const id = key.slice(key.lastIndexOf(':') + 1)
  const first = id.indexOf('-')
  const last = id.lastIndexOf('-')
  if (first <= 0 || last <= first + 1) return null
  const receivedAt = Number.parseInt(id.slice(0, first), 36)
  return Number.isSafeInteger(receivedAt) ? { receivedAt, instance: id.slice(first + 1, last), sequence: id.slice(last + 1) } : null
}

/** The receive time a batch key names; 0 when it names none. */
export function batchTime(key: string): number {
  const id = key.slice(key.lastIndexOf(':') + 1)
  const ms = Number.parseInt(id.slice(0, id.indexOf('-')), 36)
  return Number.isFinite(ms) ? ms : 0
}

/** Whether a batch key was made by the log of `token` (its sequence is the token and six digits). */
export function madeBy(key: string, instance: string, token: string): boolean {
  const parts = parseBatchKey(key)
  return parts !== null && parts.instance === instance && parts.sequence.length === token.length + 6 && parts.sequence.startsWith(token)
}

/** The outbox entry of a batch: `<prefix>:o:<instance>:<batch id>`, the id being `<time>-<instance>-<seq>`. */
export function outboxKey(prefix: string, batch: string): string {
  const batchId = batch.slice(batch.lastIndexOf(':') + 1)
  return `${prefix}:o:${batchId.split('-')[1]}:${batchId}`
}

/**
 * The outbox entry of a replay of `batch` (some of its events when `positions` is given), in the
 * outbox of `instance`: `<prefix>:o:<instance>:<batch id>.r<digest of batch and positions>`. The
 * same batch and events give the same key, so replaying a range again gives the same keys; it
 * sorts right after the batch's own entry.
 */
export function replayOutboxKey(prefix: string, instance: string, batch: string, positions?: readonly number[]): string {
  const batchId = batch.slice(batch.lastIndexOf(':') + 1)
  const digest = createHash('sha256').update(`${batch}|${positions ? positions.join(',') : '*'}`).digest('hex').slice(0, 16)
  return `${prefix}:o:${instance}:${batchId}.r${digest}`
}

/** A dedupe claim's value: `<batch key>|<claimed at, ms>`. */
export function claimValue(batch: string, at: number): string {
  return `${batch}|${at}`
}

/** The batch and time a claim value names (time 0 when it has none). */
export function parseClaim(value: string): { batch: string; at: number } {
  const split = value.lastIndexOf('|')
  if (split < 0) return { batch: value, at: 0 }
  const at = Number(value.slice(split + 1))
  return { batch: value.slice(0, split), at: Number.isFinite(at) ? at : 0 }
}

/** The base of every outbox entry: `<prefix>:o`. */
export function outboxBase(prefix: string): string {
  return `${prefix}:o`
}

/**
 * The exact count of events stored in one minute, where the store counts them in its batch write:
 * `<stats prefix>:a:<minute since the epoch>`, a number.
 */
export function acceptedCountKey(statsPrefix: string, minute: number): string {
  return `${statsPrefix}:a:${minute}`
}

/** The base of every process identity: `<prefix>:p`. */
export function processBase(prefix: string): string {
  return `${prefix}:p`
}

/** The key of the identity of the process whose log made `batch` (`<prefix>:p:<instance>-<token>`); null for a key that is not a batch key. */
export function processKeyOf(prefix: string, batch: string): string | null {
  const parts = parseBatchKey(batch)
  if (!parts || parts.sequence.length <= 6) return null
  return `${processBase(prefix)}:${parts.instance}-${parts.sequence.slice(0, -6)}`
}

/** The outbox id of an outbox key, `<instance>:<batch id>` (the key without `<prefix>:o:`). */
export function outboxId(prefix: string, key: string): string {
  return key.slice(outboxBase(prefix).length + 1)
}

/** The outbox key of an outbox id: `<prefix>:o:<outbox id>`. */
export function outboxKeyOf(prefix: string, id: string): string {
  return `${outboxBase(prefix)}:${id}`
}

/** The instance whose outbox an outbox key is in (its first owner: adopters keep the key). */
export function outboxOwner(prefix: string, key: string): string {
  return outboxId(prefix, key).split(':')[0]!
}

/**
 * Where an outbox entry sits in its instance's queue: its batch id, which starts with a
 * fixed-width time, then the instance and its sequence number, so ids sort in acceptance order.
 */
export function outboxOrder(key: string): string {
  return key.slice(key.lastIndexOf(':') + 1)
}

/** The delivery lease of an outbox entry: `<prefix>:l:<outbox id>`. */
export function leaseKey(prefix: string, id: string): string {
  return `${prefix}:l:${id}`
}

/** A delivery lease's value: `<instance>|<held until, ms>`. */
export function leaseValue(instance: string, until: number): string {
  return `${instance}|${until}`
}

/**
 * The holder and end of a lease value. `until` is NaN when the value names no time: such a lease
 * holds nothing and may be taken over.
 */
export function parseLease(value: string): { owner: string; until: number } {
  const split = value.lastIndexOf('|')
  if (split < 0) return { owner: value, until: Number.NaN }
  const text = value.slice(split + 1)
  return { owner: value.slice(0, split), until: /^\d+$/.test(text) ? Number(text) : Number.NaN }
}

/** The base of every dead letter: `<prefix>:x`. */
export function deadLetterBase(prefix: string): string {
  return `${prefix}:x`
}

/** The dead letter of an outbox id: `<prefix>:x:<outbox id>`. */
export function deadLetterKey(prefix: string, id: string): string {
  return `${deadLetterBase(prefix)}:${id}`
}

/** The key of an instance registry on Redis (a hash), and the base of its keys elsewhere: `<prefix>:seen`. */
export function seenBase(prefix: string): string {
  return `${prefix}:seen`
}

/** The key of one instance's entry in a registry kept as keys: `<prefix>:seen:<instance>`. */
export function seenKey(prefix: string, instance: string): string {
  return `${seenBase(prefix)}:${instance}`
}

/** The instance a registry key names (`<prefix>:seen:<instance>`); null when it is not one of `prefix`. */
export function parseSeenKey(prefix: string, key: string): string | null {
  const base = `${seenBase(prefix)}:`
  return key.startsWith(base) && key.length > base.length ? key.slice(base.length) : null
}
