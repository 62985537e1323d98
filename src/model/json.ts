import { IngestError, limitError } from '../base/errors'
import type { ReceivedBody } from './received'

const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c

// Fatal: invalid UTF-8 is refused, never rewritten to U+FFFD (two ids differing only in invalid
// bytes would otherwise become one, and the second be dropped as a duplicate). A leading byte
// order mark is dropped (RFC 8259 lets a parser ignore it; browsers and most JSON parsers do).
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })

/**
 * Parses a JSON body of bytes into a batch, then checks the nesting depth of every element and
 * notes whether any object has a key named `__proto__` or `constructor`, in one walk of the parsed
 * values (a few microseconds for a batch of 50 events, against about 20 for a pass over the bytes).
 *
 * Depth is checked after parsing, not before: V8 parses without recursion, so a deep body cannot
 * overflow the stack, and it costs no more than a few times a flat body of the same size (1 MB of
 * nested arrays takes about 80 ms, 1 MB of `{},{},...` 35-70 ms), so `maxBodyBytes` is what bounds
 * the parsing work. What must never see a deep value is the code that walks events recursively,
 * and this check runs before any of it.
 *
 * Element sizes (for `maxEventBytes`) are measured from the bytes only when the body is large
 * enough for one element to be over `maxEventBytes`; all of them when it is not given.
 *
 * The bytes must be UTF-8: a body that is not is refused naming the offset of the first byte that
 * is not (the offset is searched for only then). One leading byte order mark is dropped.
 *
 * `owned`: nothing else holds `bytes` or will change them (see {@link ReceivedBody.owned}).
 *
 * @throws IngestError `invalid_json`, `not_an_array` or `too_deep` (all 400)
 */
export function parseBatchBytes(bytes: Uint8Array, maxDepth: number, maxEventBytes = 0, owned = false): ReceivedBody {
  const { text, value } = decodeJson(bytes)
  // The decoder drops a leading byte order mark; so do the bytes handed on as the text's UTF-8.
  const utf8 = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes
  if (!Array.isArray(value)) {
    throw new IngestError('not_an_array', `body must be a JSON array of events, got ${describeValue(value)}`)
  }
  const protoFree = checkElements(value, maxDepth - 1)
  const bound = Math.max(0, utf8.length - 2)
  if (maxEventBytes > 0 && bound <= maxEventBytes) return { value, text, bytes: utf8, owned, sizes: [], sizeBound: bound, protoFree }
  const sizes = measureElements(utf8)
  // Sizes come from the bytes; trust them only when they line up with what JSON.parse produced.
  return sizes.length === value.length
    ? { value, text, bytes: utf8, owned, sizes, sizeBound: sizes.reduce((a, b) => Math.max(a, b), 0), protoFree }
    : { value, text, bytes: utf8, owned, sizes: [], sizeBound: Infinity, protoFree }
}

/**
 * Parses a JSON body of bytes into whatever value it holds (an object too), refusing bytes that
 * are not UTF-8 as {@link parseBatchBytes} does. For bodies that are not a batch, such as the
 * `{ "key": "pk_…", "events": [...] }` of a publishable key; the caller checks the value's depth.
 *
 * @throws IngestError `invalid_json` (400)
 */
export function parseJsonBytes(bytes: Uint8Array): unknown {
  return decodeJson(bytes).value
}

/** The text of UTF-8 `bytes` and the JSON value it holds; bytes that are not UTF-8 are refused naming the offset of the first bad byte. */
function decodeJson(bytes: Uint8Array): { text: string; value: unknown } {
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch {
    const offset = invalidUtf8Offset(bytes)
    throw new IngestError('invalid_json', `body is not valid UTF-8 at byte ${offset}`, { offset })
  }
  try {
    return { text, value: JSON.parse(text) }
  } catch (error) {
    throw new IngestError('invalid_json', `body is not valid JSON: ${(error as Error).message}`)
  }
}

/**
 * The offset of the first byte of `bytes` that does not belong to a well-formed UTF-8 sequence
 * (Unicode table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF, no sequence cut
 * short); -1 when every byte does. The start of the ill-formed sequence is what is named.
 */
function invalidUtf8Offset(bytes: Uint8Array): number {
  const length = bytes.length
  let i = 0
  while (i < length) {
    const lead = bytes[i]!
    if (lead < 0x80) {
      i++
      continue
    }
    // The range of the second byte depends on the lead; the others are always 0x80-0xBF.
    let count: number
    let low = 0x80
    let high = 0xbf
    if (lead >= 0xc2 && lead <= 0xdf) count = 1
    else if (lead >= 0xe0 && lead <= 0xef) {
      count = 2
      if (lead === 0xe0) low = 0xa0
      else if (lead === 0xed) high = 0x9f
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      count = 3
      if (lead === 0xf0) low = 0x90
      else if (lead === 0xf4) high = 0x8f
    } else return i
    if (i + count >= length) return i
    const second = bytes[i + 1]!
    if (second < low || second > high) return i
    for (let k = 2; k <= count; k++) {
      const next = bytes[i + k]!
      if (next < 0x80 || next > 0xbf) return i
    }
    i += count + 1
  }
  return -1
}

/**
 * Parses a batch a host body parser kept as text (`express.text()`). The host decoded the bytes
 * already (body-parser turns invalid UTF-8 into U+FFFD, which cannot be undone here); what can
 * still be told is half of a surrogate pair, which no UTF-8 carries and which would otherwise
 * become U+FFFD on the way to bytes.
 *
 * @throws IngestError as {@link parseBatchBytes}
 */
export function parseBatchText(text: string, maxDepth: number, maxEventBytes = 0): ReceivedBody {
  const offset = loneSurrogateOffset(text)
  if (offset >= 0) {
    throw new IngestError('invalid_json', `body is not valid UTF-8 at character ${offset}: the text holds half of a surrogate pair`, { offset })
  }
  return parseBatchBytes(Buffer.from(text, 'utf8'), maxDepth, maxEventBytes)
}

/**
 * The offset of the first character of a text that is half of a surrogate pair (which no UTF-8
 * carries); -1 when there is none.
 */
function loneSurrogateOffset(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0xd800 || unit > 0xdfff) continue
    if (unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++
        continue
      }
    }
    return i
  }
  return -1
}

/** Whether `Object.prototype` has an enumerable property, which `for...in` would visit on every object. */
function prototypeEnumerable(): boolean {
  for (const _ in Object.prototype) return true
  return false
}

/**
 * Checks that no element of a parsed batch is nested more than `budget` levels (throws `too_deep`)
 * and returns whether no object has a key named `__proto__` or `constructor`.
 */
function checkElements(elements: unknown[], budget: number): boolean {
  // With an enumerable property on Object.prototype (a host added one), `for...in` would visit it
  // on every object: only the exact walk of own keys is used then.
  const exactOnly = prototypeEnumerable()
  let protoFree = !exactOnly
  for (let i = 0; i < elements.length; i++) {
    const element = elements[i]
    if (typeof element !== 'object' || element === null) continue
    let depth = exactOnly ? -1 : depthOf(element, budget)
    if (depth < 0) {
      protoFree = false
      // The exact walk, which stops at the budget too.
      depth = inspectValue(element, budget, '', [])
    }
    if (depth > budget) throw limitError('too_deep', 'maxDepth', budget + 1, 'JSON nesting')
  }
  return protoFree
}

/**
 * Levels of nesting in a parsed JSON object or array (1 for `{}`), stopping once over `budget`;
 * -1 as soon as a key named `__proto__` or `constructor` is met. Only for values of `JSON.parse`
 * with nothing enumerable on `Object.prototype`: every key `for...in` visits is then an own one.
 */
function depthOf(value: object, budget: number): number {
  if (budget <= 0) return 1
  let deepest = 0
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i]
      if (typeof item !== 'object' || item === null) continue
      const d = depthOf(item, budget - 1)
      if (d < 0) return d
      if (d > deepest) deepest = d
      if (deepest >= budget) break
    }
  } else {
    for (const key in value) {
      if (key === '__proto__' || key === 'constructor') return -1
      const item: unknown = (value as Record<string, unknown>)[key]
      if (typeof item !== 'object' || item === null) continue
      const d = depthOf(item, budget - 1)
      if (d < 0) return d
      if (d > deepest) deepest = d
      if (deepest >= budget) break
    }
  }
  return deepest + 1
}

/**
 * The byte size of each top-level element of a JSON array, as sent (one pass over the bytes; string
 * contents are skipped byte by byte, which costs less than a native `indexOf` call per string on
 * bodies made of many short strings). Only meaningful for bytes that parsed as an array.
 */
function measureElements(bytes: Uint8Array): number[] {
  const sizes: number[] = []
  let depth = 0
  let elementStart = -1
  const length = bytes.length
  for (let i = 0; i < length; i++) {
    const c = bytes[i]!
    if (c === QUOTE) {
      if (depth === 1 && elementStart < 0) elementStart = i
      for (i++; i < length; i++) {
        const d = bytes[i]!
        if (d === QUOTE) break
        if (d === BACKSLASH) i++
      }
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth === 1 && elementStart < 0) elementStart = i
      depth++
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
  return sizes
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
