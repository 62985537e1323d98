import { IngestError, limitError } from './errors'

/** A batch body parsed from bytes, with what the scan learned so validation need not walk it again. */
export interface ParsedBody {
  /** The parsed JSON value (an array when parsing succeeded). */
  value: unknown
  /** Byte size of each top-level element, as sent. */
  sizes: number[]
  /** True when the raw bytes cannot hold a prototype key, so no walk is needed for them. */
  protoFree: boolean
  /** The body as text: the JSON of the whole array. */
  text: string
}

const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c

const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false })

/**
 * Parses a JSON body of bytes into a batch. One pass over the bytes measures nesting depth and the
 * byte size of every top-level element before `JSON.parse` runs, so a body nested too deeply is
 * refused without building it, and events are measured without serialising them again.
 *
 * @throws IngestError `invalid_json`, `not_an_array` or `too_deep` (all 400)
 */
export function parseBatchBytes(bytes: Uint8Array, maxDepth: number): ParsedBody {
  const sizes: number[] = []
  let depth = 0
  let elementStart = -1
  const length = bytes.length
  for (let i = 0; i < length; i++) {
    const c = bytes[i]!
    if (c === QUOTE) {
      if (depth === 1 && elementStart < 0) elementStart = i
      // Most of a body is string content: jump to the closing quote with the native indexOf,
      // skipping quotes escaped by an odd run of backslashes.
      let end = i
      for (;;) {
        end = bytes.indexOf(QUOTE, end + 1)
        if (end < 0) {
          end = length
          break
        }
        let slashes = 0
        while (bytes[end - 1 - slashes] === BACKSLASH) slashes++
        if ((slashes & 1) === 0) break
      }
      i = end
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth === 1 && elementStart < 0) elementStart = i
      if (++depth > maxDepth) {
        throw limitError('too_deep', 'maxDepth', maxDepth, 'JSON nesting')
      }
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--
      if (depth === 1 && elementStart >= 0) {
        sizes.push(i - elementStart + 1)
        elementStart = -1
      } else if (depth === 0 && elementStart >= 0) {
        sizes.push(i - elementStart)
        elementStart = -1
      }
    } else if (depth === 1) {
      if (c === COMMA) {
        if (elementStart >= 0) sizes.push(i - elementStart)
        elementStart = -1
      } else if (c > 0x20 && elementStart < 0) {
        elementStart = i
      }
    }
  }
  const text = decoder.decode(bytes)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new IngestError('invalid_json', `body is not valid JSON: ${(error as Error).message}`)
  }
  if (!Array.isArray(value)) {
    throw new IngestError('not_an_array', `body must be a JSON array of events, got ${describeValue(value)}`)
  }
  // Sizes come from the scan; trust them only when they line up with what JSON.parse produced.
  const protoFree = !(text.includes('__proto__') || text.includes('constructor') || text.includes('\\u'))
  return { value, sizes: sizes.length === value.length ? sizes : [], protoFree, text }
}

/** A key that must never reach a host object. `constructor` is only dangerous with `prototype` inside. */
function isPrototypeKey(key: string, value: unknown): boolean {
  if (key === '__proto__') return true
  return key === 'constructor' && typeof value === 'object' && value !== null && Object.hasOwn(value, 'prototype')
}

/**
 * Walks one JSON value: returns the depth reached below it (stopping once over `budget`) and the
 * paths of prototype keys found.
 */
export function inspectValue(value: unknown, budget: number, path: string, found: string[]): number {
  const trail: (string | number)[] = path ? [path] : []
  return inspect(value, budget, trail, found)
}

// The path is kept as a stack of keys and only joined for a prototype key found: this walk runs on
// every event of a batch, so it allocates nothing per node.
function inspect(value: unknown, budget: number, trail: (string | number)[], found: string[]): number {
  if (typeof value !== 'object' || value === null) return 0
  if (budget <= 0) return 1
  let deepest = 0
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i]
      if (typeof item !== 'object' || item === null) continue
      trail.push(i)
      const d = inspect(item, budget - 1, trail, found)
      trail.pop()
      if (d > deepest) deepest = d
      if (deepest >= budget) break
    }
  } else {
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue
      const child = (value as Record<string, unknown>)[key]
      if (isPrototypeKey(key, child)) found.push([...trail, key].join('.'))
      if (typeof child !== 'object' || child === null) continue
      trail.push(key)
      const d = inspect(child, budget - 1, trail, found)
      trail.pop()
      if (d > deepest) deepest = d
      if (deepest >= budget) break
    }
  }
  return deepest + 1
}

/** A short description of a value for error messages: `"yesterday"`, `42`, `an array`, `null`. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  switch (typeof value) {
    case 'string': {
      const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value
      return JSON.stringify(shown)
    }
    case 'number':
    case 'boolean':
      return String(value)
    case 'object':
      return 'an object'
    default:
      return typeof value
  }
}
