import { createHash } from 'node:crypto'

/**
 * Turns an event id into a storage key segment that no other id can produce and that every
 * unstorage driver keeps intact: unstorage cuts keys at `?` and turns `/` into `:`, and file
 * systems may fold case, so ids are never used raw. Short ids become lowercase hex of their UTF-8
 * bytes (`x…`), long ones a SHA-256 (`h…`); the two forms cannot meet.
 */
export function idKey(id: string): string {
  const hex = Buffer.from(id, 'utf8').toString('hex')
  return hex.length <= 200 ? `x${hex}` : `h${createHash('sha256').update(id, 'utf8').digest('hex')}`
}

// The last hour formatted: nearly every call of a process falls in the same hour.
let cachedHour = { from: 0, to: 0, text: '' }

/** The UTC hour bucket of a time, `YYYYMMDDHH`: events are partitioned by the hour they arrived. */
export function hourBucket(ms: number): string {
  if (ms >= cachedHour.from && ms < cachedHour.to) return cachedHour.text
  const d = new Date(ms)
  const text = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}`
  if (!Number.isFinite(ms)) return text
  const from = ms - (((ms % 3_600_000) + 3_600_000) % 3_600_000)
  cachedHour = { from, to: from + 3_600_000, text }
  return text
}


function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n)
}
