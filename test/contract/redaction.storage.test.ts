import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Redis from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest, createEventModel, parseBatchBytes } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'

// What reaches the storage itself: a batch with a field redacted is written from its redacted
// events on every backend, never from the bytes as received; a batch with nothing to redact is
// stored as sent.

const prefix = uniquePrefix('redaction')
const dirs: string[] = []
const SECRET = 'storage-redaction-secret-0123456789abcdef'
const EMAIL = 'ann.secret@example.com'

beforeAll(() => requireRedis())
afterAll(async () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  await deletePrefix(prefix)
})

/** Every value the backend holds, as one text. */
const backends = {
  memory: { storage: () => 'memory:' as const, contents: undefined },
  fs: {
    storage: () => {
      const dir = mkdtempSync(join(tmpdir(), 'ei-redaction-'))
      dirs.push(dir)
      return `fs:${dir}`
    },
    contents: async (storage: string) => {
      const texts: string[] = []
      const walk = (dir: string) => {
        for (const name of readdirSync(dir)) {
          const path = join(dir, name)
          if (statSync(path).isDirectory()) walk(path)
          else texts.push(readFileSync(path, 'utf8'))
        }
      }
      walk(storage.slice('fs:'.length))
      return texts.join('\n')
    },
  },
  redis: {
    storage: () => ({ driver: 'redis' as const, url: redisUrl, base: `${prefix}:${Math.random().toString(36).slice(2)}` }),
    contents: async (storage: { base: string }) => {
      const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
      try {
        const keys = await client.keys(`${storage.base}:*`)
        const values = await Promise.all(keys.map(async (key) => ((await client.type(key)) === 'string' ? client.get(key) : '')))
        return values.join('\n')
      } finally {
        client.disconnect()
      }
    },
  },
}

describe.each(Object.keys(backends) as (keyof typeof backends)[])('redaction on %s storage', (name) => {
  it('writes the redacted events of a body parsed from bytes, and stores a batch with nothing to redact as sent', async () => {
    const backend = backends[name]
    const storage = backend.storage()
    const model = createEventModel({ redact: [{ events: ['OrderCreated'], path: 'customer.email', action: 'hash' }, { path: 'items[].note', action: 'mask' }] })
    const ingest = createEventIngest({ env: {}, model, storage, redaction: { secret: SECRET } })
    try {
      await ingest.ready()
      const body = Buffer.from(JSON.stringify([
        makeEvent({ id: 'st-order', name: 'OrderCreated', source: 'api', payload: { customer: { email: EMAIL }, items: [{ note: 'hi there' }] } }),
        makeEvent({ id: 'st-view', payload: { productId: 'p1' } }),
      ]))
      const parsed = parseBatchBytes(body, model.limits.maxDepth, model.limits.maxEventBytes)
      expect(await ingest.ingest(parsed.value, { hints: parsed })).toMatchObject({ accepted: 2 })
      const plain = Buffer.from(JSON.stringify([makeEvent({ id: 'st-plain', payload: { productId: 'p2' } })]))
      const plainParsed = parseBatchBytes(plain, model.limits.maxDepth, model.limits.maxEventBytes)
      expect(await ingest.ingest(plainParsed.value, { hints: plainParsed })).toMatchObject({ accepted: 1 })
      const events = (await ingest.events({ limit: 10 })).events
      const order = events.find((e) => e.id === 'st-order')!
      expect((order.payload as any).customer.email).toMatch(/^hmac-sha256:[0-9a-f]{64}$/)
      expect((order.payload as any).items).toEqual([{ note: '***' }])
      expect(events.find((e) => e.id === 'st-plain')!.payload).toEqual({ productId: 'p2' })
      if (backend.contents) {
        const held = await backend.contents(storage as never)
        expect(held).toContain('st-order')
        expect(held).not.toContain(EMAIL)
        expect(held).not.toContain('hi there')
        expect(held).not.toContain(SECRET)
      }
      expect((await ingest.stats()).redacted).toEqual({ events: 1, dropped: 0, masked: 1, hashed: 1 })
    } finally {
      await ingest.close()
    }
    if (name === 'memory') return
    // The counts are flushed with the instance's stats bucket: another instance reads them back.
    const next = createEventIngest({ env: {}, model, storage, redaction: { secret: SECRET } })
    try {
      expect((await next.stats()).redacted).toEqual({ events: 1, dropped: 0, masked: 1, hashed: 1 })
    } finally {
      await next.close()
    }
  })
})
