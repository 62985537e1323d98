import { describe, expect, it } from 'vitest'
import { randomId } from '../../src/client/client'

const uuidV4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('event ids', () => {
  it('are UUID v4 from crypto.randomUUID', () => {
    expect(randomId()).toMatch(uuidV4)
  })

  it('are UUID v4 from getRandomValues where randomUUID is missing (a page over plain http)', () => {
    const own = Object.getOwnPropertyDescriptor(crypto, 'randomUUID')
    const proto = Object.getPrototypeOf(crypto) as object
    const inherited = Object.getOwnPropertyDescriptor(proto, 'randomUUID')
    Object.defineProperty(crypto, 'randomUUID', { value: undefined, configurable: true })
    try {
      expect(typeof crypto.randomUUID).toBe('undefined')
      const ids = Array.from({ length: 1000 }, randomId)
      for (const id of ids) expect(id).toMatch(uuidV4)
      expect(new Set(ids).size).toBe(1000)
    } finally {
      if (own) Object.defineProperty(crypto, 'randomUUID', own)
      else delete (crypto as { randomUUID?: unknown }).randomUUID
      expect(inherited === undefined || typeof crypto.randomUUID === 'function').toBe(true)
    }
  })
})
