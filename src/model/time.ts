const ZERO = 0x30
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/**
 * The time of a timestamp in the canonical form `YYYY-MM-DDTHH:mm:ss.sssZ` naming a real date and
 * time, in ms; NaN for anything else (which the full pattern then judges). Read by hand, digit by
 * digit, with the day count of the proleptic Gregorian calendar: cheaper than the datetime
 * pattern, and the time is needed anyway to count the event's lag.
 */
export function canonicalTime(s: string): number {
  if (s.length !== 24 || s.charCodeAt(4) !== 0x2d || s.charCodeAt(7) !== 0x2d || s.charCodeAt(10) !== 0x54
    || s.charCodeAt(13) !== 0x3a || s.charCodeAt(16) !== 0x3a || s.charCodeAt(19) !== 0x2e || s.charCodeAt(23) !== 0x5a) return Number.NaN
  const y1 = s.charCodeAt(0) - ZERO
  const y2 = s.charCodeAt(1) - ZERO
  const y3 = s.charCodeAt(2) - ZERO
  const y4 = s.charCodeAt(3) - ZERO
  const mo1 = s.charCodeAt(5) - ZERO
  const mo2 = s.charCodeAt(6) - ZERO
  const d1 = s.charCodeAt(8) - ZERO
  const d2 = s.charCodeAt(9) - ZERO
  const h1 = s.charCodeAt(11) - ZERO
  const h2 = s.charCodeAt(12) - ZERO
  const mi1 = s.charCodeAt(14) - ZERO
  const mi2 = s.charCodeAt(15) - ZERO
  const s1 = s.charCodeAt(17) - ZERO
  const s2 = s.charCodeAt(18) - ZERO
  const ms1 = s.charCodeAt(20) - ZERO
  const ms2 = s.charCodeAt(21) - ZERO
  const ms3 = s.charCodeAt(22) - ZERO
  // Negative as soon as one of them is not a digit (below 0, or above 9).
  const bad = y1 | y2 | y3 | y4 | mo1 | mo2 | d1 | d2 | h1 | h2 | mi1 | mi2 | s1 | s2 | ms1 | ms2 | ms3
    | (9 - y1) | (9 - y2) | (9 - y3) | (9 - y4) | (9 - mo1) | (9 - mo2) | (9 - d1) | (9 - d2) | (9 - h1) | (9 - h2)
    | (9 - mi1) | (9 - mi2) | (9 - s1) | (9 - s2) | (9 - ms1) | (9 - ms2) | (9 - ms3)
  if (bad < 0) return Number.NaN
  const year = y1 * 1000 + y2 * 100 + y3 * 10 + y4
  const month = mo1 * 10 + mo2
  const day = d1 * 10 + d2
  const hour = h1 * 10 + h2
  const minute = mi1 * 10 + mi2
  const second = s1 * 10 + s2
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return Number.NaN
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  if (day > (month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!)) return Number.NaN
  // Days since 1970-01-01, counting years from March so the leap day ends a year.
  const y = month <= 2 ? year - 1 : year
  const era = Math.floor(y / 400)
  const yearOfEra = y - era * 400
  const dayOfYear = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1
  const days = era * 146_097 + yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear - 719_468
  return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + ms1 * 100 + ms2 * 10 + ms3
}

/** `0000-01-01T00:00:00.000Z`, the earliest instant an `occurredAt` may name once in UTC. */
export const EARLIEST_TIME = -62_167_219_200_000
/** `9999-12-31T23:59:59.999Z`, the latest instant an `occurredAt` may name once in UTC. */
export const LATEST_TIME = 253_402_300_799_999

/**
 * Whether an instant (ms) has a four-digit year in UTC. Outside years 0000-9999 `toISOString()`
 * writes six digits and a sign (`-000001-12-31T23:30:00.000Z`), which the timestamp pattern
 * refuses: an event stored so could never be sent again, to this service or another.
 */
export function withinYears(ms: number): boolean {
  return ms >= EARLIEST_TIME && ms <= LATEST_TIME
}
