import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import Redis from 'ioredis'
import { makeEvent } from '../helpers/fixtures'
import { projectRoot, whenListening } from '../helpers/process'
import { getJson, rawRequest } from '../helpers/http'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'
import { waitFor } from '../helpers/sink'

/**
 * Two separate Node processes, each an event-ingest instance with rate limits behind a real HTTP
 * server, on one prefix of the shared Redis (REDIS_URL): one limit for both, counted in Redis,
 * whichever instance a request reaches. The prefix's keys are deleted after.
 */

const childScript = fileURLToPath(new URL('../helpers/redis-ingest-process.ts', import.meta.url))
const prefix = uniquePrefix('rl-multi')
const ADMIN = 'rl-multi-admin-token'
const rateLimits = { perAddress: { points: 5, durationSeconds: 60 }, perSource: { points: 8, durationSeconds: 60 }, trustProxy: 1 }

interface Child {
  proc: ChildProcessWithoutNullStreams
  url: string
}

const children: Child[] = []

async function startChild(instanceId: string): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', childScript, redisUrl, prefix, instanceId, ADMIN], { cwd: projectRoot, stdio: 'pipe', env: { ...process.env, RATE_LIMITS: JSON.stringify(rateLimits) } })
  const child: Child = { proc, url: '' }
  children.push(child)
  child.url = await whenListening(proc, instanceId).url
  return child
}

async function stopChild({ proc }: Child): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  proc.kill('SIGTERM')
  const force = setTimeout(() => proc.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(force)
}

const post = (child: Child, events: unknown[], address: string) => rawRequest(`${child.url}/events/ingest`, { headers: { 'content-type': 'application/json', 'x-forwarded-for': address }, body: JSON.stringify(events) })

describe('rate limits shared by two processes on one Redis prefix', () => {
  let a: Child
  let b: Child
  beforeAll(async () => {
    await requireRedis()
    ;[a, b] = await Promise.all([startChild('rl_multi_a'), startChild('rl_multi_b')])
  }, 30_000)
  afterAll(async () => {
    await Promise.all(children.map(stopChild))
    await deletePrefix(prefix)
  })

  it('lets exactly N requests of an address through, alternating instances, then refuses on both', async () => {
    const order = () => makeEvent({ name: 'OrderCreated', source: 'api', payload: { orderId: 'o1' } })
    for (let i = 0; i < 5; i++) {
      const res = await post(i % 2 === 0 ? a : b, [order()], '192.0.2.50')
      expect(res.status, `request ${i + 1}: ${res.text}`).toBe(200)
    }
    for (const child of [a, b]) {
      const refused = await post(child, [order()], '192.0.2.50')
      expect(refused.status).toBe(429)
      expect(refused.json).toMatchObject({ code: 'rate_limited', limit: 'perAddress', points: 5 })
      expect(Number(refused.headers['retry-after'])).toBe(refused.json.retryAfterSeconds)
    }
    // Another address has its own count, on either instance.
    expect((await post(b, [order()], '192.0.2.51')).status).toBe(200)
  })

  it('counts the events of a source across both processes, and either one\'s stats show both\'s refusals', async () => {
    const bot = () => makeEvent({ name: 'BotCommand', source: 'bot', payload: { command: '/help' } })
    expect((await post(a, [bot(), bot(), bot(), bot(), bot()], '192.0.2.60')).status).toBe(200)
    expect((await post(b, [bot(), bot(), bot()], '192.0.2.61')).status).toBe(200)
    const refused = await post(a, [bot()], '192.0.2.62')
    expect(refused.json).toMatchObject({ code: 'rate_limited', limit: 'perSource', source: 'bot', points: 8 })
    const client = new Redis(redisUrl)
    try {
      // The 8 events taken; the refused one was given back.
      expect(await client.get(`${prefix}:events:r:perSource:bot`)).toBe('8')
    } finally {
      client.disconnect()
    }
    const read = async () => (await getJson(`${b.url}/admin/events/stats`, { authorization: `Bearer ${ADMIN}` })).body
    await waitFor(async () => (await read()).rateLimits.refused === 3, 10_000, 'both processes\' refusals in the stats')
    expect((await read()).rateLimits).toEqual({ refused: 3, byLimit: { perAddress: 2, perSource: 1 }, storeErrors: 0 })
  })
})
