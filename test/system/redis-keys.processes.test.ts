import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest, type EventIngest } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { rawRequest } from '../helpers/http'
import { startTs } from '../helpers/process'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'

/**
 * Publishable keys on two instances: two Node processes, each an event-ingest instance behind a
 * real HTTP server on one Redis prefix, configured by the same environment (a secret token and
 * `EVENT_PUBLISHABLE_KEYS`, as a deployment sets them). A key is configuration, not storage: each
 * instance accepts it, limits it to its sources and origins, and refuses the secret token in the
 * query string; a beacon retried at the other instance is a duplicate, and either instance's
 * stats count both.
 */

const childScript = fileURLToPath(new URL('../helpers/redis-ingest-process.ts', import.meta.url))
const prefix = uniquePrefix('keys')
const ADMIN = 'keys-admin-token'
const SECRET = 'keys-secret-token'
const KEY = 'pk_live_storefront_0123456789'
const SHOP = 'https://shop.example'
const env = {
  EVENT_INGEST_TOKEN: SECRET,
  EVENT_PUBLISHABLE_KEYS: JSON.stringify([{ id: 'storefront-web', key: KEY, sources: ['storefront'], origins: [SHOP] }]),
}

type Child = ReturnType<typeof startTs> & { url: string }
const children: Child[] = []
let observer: EventIngest<any> | undefined

async function startChild(instanceId: string): Promise<Child> {
  const child = startTs(childScript, [redisUrl, prefix, instanceId, ADMIN, '100', JSON.stringify(env)])
  children.push(child as Child)
  const line = await child.waitForLine((l) => l.startsWith('LISTENING '))
  return Object.assign(child, { url: line.slice('LISTENING '.length) })
}

const beacon = (url: string, query: string, events: unknown[], headers: Record<string, string> = { origin: SHOP }) =>
  rawRequest(`${url}/events/ingest${query}`, { headers: { 'content-type': 'text/plain;charset=UTF-8', ...headers }, body: JSON.stringify(events) })

async function stats(url: string) {
  const response = await fetch(`${url}/admin/events/stats`, { headers: { authorization: `Bearer ${ADMIN}` } })
  expect(response.status).toBe(200)
  return (await response.json()) as { instances: number; byKey: Record<string, number>; totals: { accepted: number; duplicates: number; rejected: number }; failures: { refusedByCode: Record<string, number> } }
}

describe('publishable keys on two processes sharing one Redis prefix', () => {
  let a: Child
  let b: Child
  beforeAll(async () => {
    await requireRedis()
    ;[a, b] = await Promise.all([startChild('keys_a'), startChild('keys_b')])
    observer = createEventIngest({ env: {}, storage: { driver: 'redis', url: redisUrl, base: prefix }, instanceId: 'keys_observer' })
    await observer.ready()
  })
  afterAll(async () => {
    for (const child of children) {
      child.proc.kill('SIGTERM')
      await Promise.race([child.closed, sleep(5000).then(() => child.proc.kill('SIGKILL'))])
    }
    await observer?.close()
    await deletePrefix(prefix)
  })

  it('each instance accepts the key; a beacon retried at the other is a duplicate, stored once', async () => {
    const events = [makeEvent({ id: `${prefix}-1` }), makeEvent({ id: `${prefix}-2` })]
    const first = await beacon(a.url, `?key=${KEY}`, events)
    expect(first.status, first.text).toBe(200)
    expect(first.json).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
    expect(first.headers['access-control-allow-origin']).toBe(SHOP)
    const retried = await beacon(b.url, `?key=${KEY}`, events)
    expect(retried.status, retried.text).toBe(200)
    expect(retried.json).toEqual({ accepted: 0, duplicates: 2, rejected: [] })
    const stored = (await observer!.events({ limit: 100 })).events.filter((e) => e.id.startsWith(prefix))
    expect(stored.map((e) => e.id).sort()).toEqual([`${prefix}-1`, `${prefix}-2`])
  })

  it("each instance holds the key to its sources and origins, and refuses the secret token in the query", async () => {
    for (const child of [a, b]) {
      const other = await beacon(child.url, `?key=${KEY}`, [makeEvent({ id: `${prefix}-api-${child.url}`, name: 'OrderCreated', source: 'api', payload: { orderId: 'o' } })])
      expect(other.status).toBe(200)
      expect(other.json.rejected).toEqual([{ index: 0, id: `${prefix}-api-${child.url}`, errors: [{ path: 'source', message: 'source: publishable key "storefront-web" may send storefront events only, got "api"' }] }])
      const origin = await beacon(child.url, `?key=${KEY}`, [makeEvent()], { origin: 'https://evil.example' })
      expect(origin.status).toBe(403)
      expect(origin.json).toMatchObject({ code: 'origin_forbidden', origin: 'https://evil.example' })
      const wrong = await beacon(child.url, `?key=${KEY}x`, [makeEvent()])
      expect(wrong.json.code).toBe('key_invalid')
      const secret = await beacon(child.url, `?key=${SECRET}`, [makeEvent()])
      expect(secret.status).toBe(401)
      expect(secret.json.code).toBe('token_not_allowed')
      const none = await beacon(child.url, '', [makeEvent()])
      expect(none.json.code).toBe('token_missing')
      const server = await rawRequest(`${child.url}/events/ingest`, { headers: { 'content-type': 'application/json', 'x-event-token': SECRET }, body: JSON.stringify([makeEvent({ name: 'OrderCreated', source: 'api', payload: { orderId: 'o' } })]) })
      expect(server.json).toMatchObject({ accepted: 1, rejected: [] })
    }
    expect((await observer!.events({ limit: 1000 })).events.filter((e) => e.id.startsWith(`${prefix}-api-`))).toEqual([])
  })

  it("either instance's stats count both: what was accepted, rejected and refused by code", async () => {
    const expectation = (s: Awaited<ReturnType<typeof stats>>) =>
      s.instances === 2 && s.totals.accepted === 4 && s.totals.duplicates === 2 && s.totals.rejected === 2 &&
      s.failures.refusedByCode.origin_forbidden === 2 && s.failures.refusedByCode.key_invalid === 2 &&
      s.failures.refusedByCode.token_not_allowed === 2 && s.failures.refusedByCode.token_missing === 2 && s.byKey['storefront-web'] === 2
    for (const child of [a, b]) {
      const deadline = Date.now() + 5000
      let last = await stats(child.url)
      while (!expectation(last) && Date.now() < deadline) {
        await sleep(100)
        last = await stats(child.url)
      }
      // Four stored: two by the key (the retry at the other instance was a duplicate), two by the secret token.
      expect(last).toMatchObject({ instances: 2, totals: { accepted: 4, duplicates: 2, rejected: 2 }, byKey: { 'storefront-web': 2 } })
      expect(last.failures.refusedByCode).toMatchObject({ origin_forbidden: 2, key_invalid: 2, token_not_allowed: 2, token_missing: 2 })
      expect(JSON.stringify(last)).not.toContain(SECRET)
      expect(JSON.stringify(last)).not.toContain(KEY)
    }
  })
})
