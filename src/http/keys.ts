import { createHash, timingSafeEqual } from 'node:crypto'
import { IngestError } from '../base/errors'
import { shown } from '../base/option-checks'
import { eventSources, type EventSource } from '../model/definitions'

// Publishable keys: credentials a browser may hold (a beacon cannot send `x-event-token`), each
// limited to the sources and origins it is issued for. Checked at creation here, looked up per
// request here; the handler decides where a key is read from.

/** A key a browser may hold: sent as `?key=` or in the body, limited to its sources and origins. */
export interface PublishableKey {
  /** A public label for the key, named in errors; never the key itself. 1-64 letters, digits, `_`, `.` or `-`. */
  id: string
  /** The key: `pk_` and at least 16 more letters, digits, `_` or `-` (safe in a URL as is). */
  key: string
  /** The sources events sent with this key may have: an event of another source is rejected. */
  sources: readonly EventSource[]
  /**
   * The exact origins (`https://shop.example`, scheme, host and port) a browser may send it from,
   * or `'*'` for any. A request with another `Origin` is refused with 403.
   */
  origins: readonly string[]
}

/** The shape of a key: what `?key=` carries, so it needs no encoding. */
export const PUBLISHABLE_KEY_PATTERN = /^pk_[A-Za-z0-9_-]{16,253}$/

const KEY_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/

/**
 * Checks the `publishableKeys` option (or `EVENT_PUBLISHABLE_KEYS`, parsed), naming the field of a
 * bad one, and returns the keys frozen. `secretTokens`: a key may not also be a secret token.
 */
export function checkPublishableKeys(name: string, value: unknown, secretTokens: readonly string[]): readonly PublishableKey[] {
  if (value === undefined) return Object.freeze([])
  if (!Array.isArray(value)) throw new TypeError(`[event-ingest] ${name} must be an array of { id, key, sources, origins }, got ${shown(value)}`)
  const ids = new Set<string>()
  const keys = new Set<string>()
  return Object.freeze(value.map((entry: unknown, i) => {
    const at = `${name}[${i}]`
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new TypeError(`[event-ingest] ${at} must be an object { id, key, sources, origins }, got ${shown(entry)}`)
    const { id, key, sources, origins } = entry as Record<string, unknown>
    for (const field of Object.keys(entry)) {
      if (!['id', 'key', 'sources', 'origins'].includes(field)) throw new TypeError(`[event-ingest] ${at}.${field} is not an option; known: id, key, sources, origins`)
    }
    if (typeof id !== 'string' || !KEY_ID_PATTERN.test(id)) throw new TypeError(`[event-ingest] ${at}.id must be 1-64 letters, digits, "_", "." or "-", got ${shown(id)}`)
    if (ids.has(id)) throw new TypeError(`[event-ingest] ${at}.id: ${JSON.stringify(id)} names two keys`)
    ids.add(id)
    // The key itself is never shown in an error: it may be a real one.
    if (typeof key !== 'string' || !PUBLISHABLE_KEY_PATTERN.test(key)) {
      throw new TypeError(`[event-ingest] ${at}.key must be "pk_" and 16 to 253 letters, digits, "_" or "-"${typeof key === 'string' ? ` (got ${key.length} characters${key.startsWith('pk_') ? '' : ' not starting with "pk_"'})` : `, got ${shown(key)}`}`)
    }
    if (keys.has(key)) throw new TypeError(`[event-ingest] ${at}.key is the key of another entry`)
    keys.add(key)
    if (secretTokens.includes(key)) throw new TypeError(`[event-ingest] ${at}.key is also a secret ingest token: a secret token must never be given to a browser`)
    if (!Array.isArray(sources) || sources.length === 0 || !sources.every((source) => typeof source === 'string')) {
      throw new TypeError(`[event-ingest] ${at}.sources must be a non-empty array of sources (${eventSources.join(', ')}), got ${shown(sources)}`)
    }
    for (const source of sources as string[]) {
      if (!(eventSources as readonly string[]).includes(source)) throw new RangeError(`[event-ingest] ${at}.sources: expected one of ${eventSources.join(', ')}, got ${JSON.stringify(source)}`)
    }
    if (!Array.isArray(origins) || origins.length === 0 || !origins.every((origin) => typeof origin === 'string')) {
      throw new TypeError(`[event-ingest] ${at}.origins must be a non-empty array of origins (like "https://shop.example") or ["*"], got ${shown(origins)}`)
    }
    for (const origin of origins as string[]) {
      if (origin !== '*' && !isExactOrigin(origin)) {
        throw new RangeError(`[event-ingest] ${at}.origins: ${JSON.stringify(origin)} is not an origin; write scheme, host and port only, as a browser sends it (like "https://shop.example"), or "*"`)
      }
    }
    return Object.freeze({ id, key, sources: Object.freeze([...sources]) as readonly EventSource[], origins: Object.freeze([...origins]) as readonly string[] })
  }))
}

/** `https://shop.example` or `http://localhost:3000`: what a browser sends in `Origin`, and nothing more. */
function isExactOrigin(origin: string): boolean {
  try {
    const url = new URL(origin)
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === origin
  } catch {
    return false
  }
}

/** Parses `EVENT_PUBLISHABLE_KEYS`: a JSON array of `{ id, key, sources, origins }`. */
export function parsePublishableKeysVariable(name: string, text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (error) {
    throw new TypeError(`[event-ingest] ${name} must be a JSON array of { id, key, sources, origins }: ${(error as Error).message}`)
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

/** A key's lookup, as the handler uses it. */
export interface KeyCheck {
  /**
   * The key `presented` is, compared as SHA-256 digests in constant time against every key; a
   * secret ingest token presented as a key is refused (`token_not_allowed`), anything else that is
   * no key with `key_invalid`. Neither error shows what was presented.
   */
  lookup(presented: string, where: string): PublishableKey
  /** Refuses (403 `origin_forbidden`) an `Origin` the key was not issued for; no `Origin` is not checked. */
  checkOrigin(key: PublishableKey, origin: string | undefined): void
}

/** Builds the lookup of publishable keys; `secretTokens` are recognised to be refused, never accepted. */
export function createKeyCheck(keys: readonly PublishableKey[], secretTokens: readonly string[]): KeyCheck {
  const digests = keys.map((entry) => digest(entry.key))
  const secrets = secretTokens.map(digest)
  return {
    lookup(presented, where) {
      const candidate = digest(presented)
      let found: PublishableKey | undefined
      for (let i = 0; i < digests.length; i++) {
        if (timingSafeEqual(candidate, digests[i]!)) found = keys[i]
      }
      let secret = false
      for (const expected of secrets) {
        if (timingSafeEqual(candidate, expected)) secret = true
      }
      if (found) return found
      if (secret) throw tokenNotAllowed(where)
      throw new IngestError('key_invalid', `${where}: the publishable key is not valid`)
    },
    checkOrigin(key, origin) {
      if (origin === undefined || key.origins.includes('*') || key.origins.includes(origin)) return
      throw new IngestError('origin_forbidden', `origin: ${JSON.stringify(origin)} is not an origin of publishable key "${key.id}"`, { origin, keyId: key.id })
    },
  }
}

/** A secret token outside the `x-event-token` header: refused, and never echoed. */
export function tokenNotAllowed(where: string): IngestError {
  return new IngestError('token_not_allowed', `${where}: a secret ingest token is accepted only in the x-event-token header, never in the query string or the body; rotate it, it may have been logged`)
}

