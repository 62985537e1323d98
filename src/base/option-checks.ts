/**
 * Checks of option values, run when the core is created: each bad value throws a TypeError (wrong
 * type) or RangeError (out of range) prefixed `[event-ingest]` and naming the option, so a typo
 * fails at start and not on the first request or timer.
 */

/** The longest delay `setTimeout` keeps (2^31 - 1 ms); longer ones fire after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647

/** A value as an error message shows it. */
export function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object' && value !== null) return 'an object'
  return String(value)
}

/** A message without its `[event-ingest] ` prefix, to be prefixed again once. */
export function withoutPrefix(message: string): string {
  return message.replace(/^\[event-ingest\] /, '')
}

/** A number option: finite, above 0 (or at least 0 with `zero`), an integer with `integer`, at most `max`. */
export function checkNumber(name: string, value: unknown, rules: { integer?: boolean; zero?: boolean; max?: number } = {}): void {
  if (value === undefined) return
  const kind = rules.integer ? 'integer' : 'number'
  const range = rules.zero ? `a non-negative ${kind}` : `a positive ${kind}`
  if (typeof value !== 'number') throw new TypeError(`[event-ingest] ${name} must be ${range}, got ${shown(value)}`)
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !rules.zero) || (rules.integer && !Number.isSafeInteger(value))) {
    throw new RangeError(`[event-ingest] ${name} must be ${range}, got ${shown(value)}`)
  }
  if (rules.max !== undefined && value > rules.max) throw new RangeError(`[event-ingest] ${name} must be at most ${rules.max}, got ${value}`)
}

export function checkFunction(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function') throw new TypeError(`[event-ingest] ${name} must be a function, got ${shown(value)}`)
}

export function checkBoolean(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean') throw new TypeError(`[event-ingest] ${name} must be true or false, got ${shown(value)}`)
}

export function checkString(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'string') throw new TypeError(`[event-ingest] ${name} must be a string, got ${shown(value)}`)
}

/** A batch store of the host's own: an object with an `append(batch)` method (see AtomicBatchStore). */
export function checkStore(name: string, value: unknown): void {
  if (value === undefined) return
  if (typeof value !== 'object' || value === null || typeof (value as { append?: unknown }).append !== 'function') {
    throw new TypeError(`[event-ingest] ${name} must be a batch store, an object with an append(batch) method, got ${shown(value)}`)
  }
}

/** An options object (not an array, not null). */
export function checkObject(name: string, value: unknown): void {
  if (value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    throw new TypeError(`[event-ingest] ${name} must be an object, got ${shown(value)}`)
  }
}

/** A token option: a string (comma-separated) or a list of strings. */
export function checkTokens(name: string, value: unknown): void {
  if (value === undefined || typeof value === 'string') return
  if (!Array.isArray(value) || value.some((token) => typeof token !== 'string')) {
    throw new TypeError(`[event-ingest] ${name} must be a string or an array of strings, got ${shown(value)}`)
  }
}

/**
 * An options object whose every key is a known option: a misspelt name (`tokn`) would otherwise be
 * ignored without a word, and leave, say, ingest open.
 */
export function checkKeys(name: string, value: object | undefined, known: readonly string[]): void {
  if (value === undefined) return
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      const close = known.find((option) => distance(option.toLowerCase(), key.toLowerCase()) <= 2)
      throw new TypeError(`[event-ingest] ${name === 'options' ? '' : `${name}.`}${key} is not an option${close ? ` (did you mean ${name === 'options' ? '' : `${name}.`}${close}?)` : ''}; known: ${known.join(', ')}`)
    }
  }
}

/** Edit distance (insertions, deletions, substitutions) between two short names. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    row = next
  }
  return row[b.length]!
}
