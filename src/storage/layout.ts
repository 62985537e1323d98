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
