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
  /** The UTF-8 of `text`: the body as given, without a leading byte order mark. */
  bytes: Uint8Array
}

const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const LOWER_U = 0x75
const UNDERSCORE = 0x5f
const LOWER_C = 0x63

const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false })
const PROTO = Buffer.from('__proto__')
const CONSTRUCTOR = Buffer.from('constructor')

/** Whether `bytes[from, from + word.length)` is `word`. */
function matchesAt(bytes: Uint8Array, from: number, word: Uint8Array): boolean {
  for (let k = 0; k < word.length; k++) if (bytes[from + k] !== word[k]) return false
  return true
}

/**
 * Parses a JSON body of bytes into a batch. One pass over the bytes measures nesting depth and the
 * byte size of every top-level element before `JSON.parse` runs, so a body nested too deeply is
 * refused without building it (V8 parses deep nesting without a stack limit, but slowly), events
 * are measured without serialising them again, and a body that cannot hold a prototype key is
 * marked so validation need not walk it.
 *
 * The pass is a plain loop over the bytes: string contents are skipped byte by byte, which costs
 * less than a native `indexOf` call per string on bodies made of many short strings.
 *
 * @throws IngestError `invalid_json`, `not_an_array` or `too_deep` (all 400)
 */
export function parseBatchBytes(bytes: Uint8Array, maxDepth: number): ParsedBody {
  const sizes: number[] = []
  let depth = 0
  let elementStart = -1
  // A prototype key is the exact string "__proto__" or "constructor", or hides behind a \u escape:
  // any string that could be one (key or value) makes the body not proto-free.
  let protoFree = true
  const length = bytes.length
  for (let i = 0; i < length; i++) {
    const c = bytes[i]!
    if (c === QUOTE) {
      const open = i
      if (depth === 1 && elementStart < 0) elementStart = i
      for (i++; i < length; i++) {
        const d = bytes[i]!
        if (d === QUOTE) break
        if (d === BACKSLASH) {
          if (bytes[i + 1] === LOWER_U) protoFree = false
          i++
        }
      }
      const size = i - open - 1
      if ((size === 9 && bytes[open + 1] === UNDERSCORE && matchesAt(bytes, open + 1, PROTO))
        || (size === 11 && bytes[open + 1] === LOWER_C && matchesAt(bytes, open + 1, CONSTRUCTOR))) {
        protoFree = false
      }
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
  // The decoder drops a leading byte order mark; so do the bytes handed on as the text's UTF-8.
  const utf8 = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes
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
  return { value, sizes: sizes.length === value.length ? sizes : [], protoFree, text, bytes: utf8 }
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
