import { createHash, timingSafeEqual } from 'node:crypto'

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

/** Splits a token option or a comma-separated environment value into a clean list. */
export function parseTokens(value: string | readonly string[] | undefined): string[] {
  if (value === undefined) return []
  const list = typeof value === 'string' ? value.split(',') : [...value]
  return list.map((token) => token.trim()).filter((token) => token.length > 0)
}

/**
 * Builds a check of a presented token against one or more valid tokens (several at once allow
 * rotation). Both sides are compared as SHA-256 digests with `timingSafeEqual`, so lengths always
 * match, nothing throws, and every configured token is compared (no early exit).
 */
export function createTokenCheck(tokens: readonly string[]): (presented: string | undefined) => boolean {
  const digests = tokens.map(digest)
  return (presented) => {
    if (presented === undefined) return false
    const candidates = [digest(presented)]
    // Node reads header bytes as latin1; a client that sent a UTF-8 token arrives mangled, so the
    // UTF-8 reading of the same bytes is compared too.
    if (/[\x80-\xff]/.test(presented)) {
      const utf8 = Buffer.from(presented, 'latin1').toString('utf8')
      if (!utf8.includes('\ufffd')) candidates.push(digest(utf8))
    }
    let match = false
    for (const candidate of candidates) {
      for (const expected of digests) {
        if (timingSafeEqual(candidate, expected)) match = true
      }
    }
    return match
  }
}

/** Reads a `Bearer` credential from an Authorization header value. */
export function readBearer(header: string | undefined): string | undefined {
  if (!header) return undefined
  const match = /^\s*Bearer\s+(.+?)\s*$/i.exec(header)
  return match ? match[1] : undefined
}
