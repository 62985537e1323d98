import Redis from 'ioredis'
import { createStorage, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import redisDriver from 'unstorage/drivers/redis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { AtomicBatch } from '../../src/storage/atomic'
import { idKey } from '../../src/storage/layout'
import { redisBatchStore } from '../../src/storage/redis-store'
import { deletePrefix, redisUrl, requireRedis, startOwnRedis, uniquePrefix, type OwnRedis } from '../helpers/redis'

/**
 * The one-step batch write on Redis, through its interface, against a real Redis: what it writes,
 * what it leaves alone when ids are held, how many commands a batch costs (counted with MONITOR
 * on a second connection, filtered by this run's prefix), and that it survives an emptied script
 * cache.
 */

const prefix = uniquePrefix('store')
const opened: Storage[] = []
const raw = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
raw.on('error', () => {})

function redisStorage(base: string, url = redisUrl): Storage {
  const storage = createStorage({ driver: redisDriver({ url, base, maxRetriesPerRequest: 1 }) })
  opened.push(storage)
  return storage
}

let counter = 0
/** A storage of its own, under this run's prefix. */
function fresh(): { storage: Storage; base: string } {
  const base = `${prefix}:${++counter}`
  return { storage: redisStorage(base), base }
}

function batch(ids: string[], options: { key?: string; outbox?: boolean; windowMs?: number; bytes?: boolean } = {}) {
  const batchKey = options.key ?? `events:b:2026120207:${(++counter).toString(36)}-test-x`
  const calls: (readonly number[] | undefined)[] = []
  const claimedAt = Date.now()
  const value: AtomicBatch = {
    ids,
    claim: `${batchKey}|${claimedAt}`,
    claimedAt,
    windowMs: options.windowMs ?? 60_000,
    batchKey,
    record(positions) {
      calls.push(positions)
      const text = JSON.stringify({ v: 1, receivedAt: 1, instance: 'test', events: (positions ?? ids.map((_, p) => p)).map((p) => ({ id: ids[p] })) })
      return options.bytes ? new TextEncoder().encode(text) : text
    },
    ...(options.outbox !== false && { outbox: { key: `events:o:test:${batchKey.slice(batchKey.lastIndexOf(':') + 1)}`, entry: (stored: number) => JSON.stringify({ batch: batchKey, events: stored, receivedAt: 1 }) } }),
  }
  return { ...value, calls }
}

/** The ids a stored record holds. */
async function recordIds(storage: Storage, key: string): Promise<string[] | null> {
  const record = await storage.getItem<{ events: { id: string }[] }>(key)
  return record === null ? null : record.events.map((e) => e.id)
}

/** Commands clients sent naming `base` (or, with `fromScript`, those scripts ran), seen by MONITOR while `run` runs. */
async function commandsDuring(base: string, run: () => Promise<unknown>, url = redisUrl, fromScript = false): Promise<string[][]> {
  const monitor = await new Redis(url).monitor()
  const seen: string[][] = []
  const marker = `${base}:done:${Math.random()}`
  let sawMarker!: () => void
  const done = new Promise<void>((resolve) => (sawMarker = resolve))
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (args.some((arg) => arg === marker)) sawMarker()
    // What a script runs is shown too, from source "lua": not a command of the client's.
    else if ((source === 'lua') === fromScript && args.some((arg) => arg.includes(base))) seen.push(args)
  })
  try {
    await run()
    // Once MONITOR shows a command sent after the run, it has shown every command of the run.
    const probe = new Redis(url)
    await probe.echo(marker)
    probe.disconnect()
    await done
  } finally {
    monitor.disconnect()
  }
  return seen
}

beforeAll(() => requireRedis())
afterAll(async () => {
  await Promise.all(opened.map((s) => s.dispose()))
  raw.disconnect()
  await deletePrefix(prefix)
})

describe('redisBatchStore', () => {
  it('is defined for a single-node redis storage only', () => {
    expect(redisBatchStore(fresh().storage, 'events')).toBeDefined()
    expect(redisBatchStore(createStorage({ driver: memoryDriver() }), 'events')).toBeUndefined()
    // Claims on another driver than the records: no one script reaches them all.
    const split = redisStorage(`${prefix}:split`)
    split.mount('events:d', memoryDriver())
    expect(redisBatchStore(split, 'events')).toBeUndefined()
  })

  it('stores a batch of new ids in one script call: claims, record and outbox entry', async () => {
    const { storage, base } = fresh()
    const store = redisBatchStore(storage, 'events')!
    const b = batch(['a', 'b', 'c'])
    let result: unknown
    const commands = await commandsDuring(base, async () => (result = await store.append(b)))
    expect(result).toEqual({ duplicates: [] })
    expect(commands).toHaveLength(1)
    expect(commands[0]![0]).toMatch(/^eval(sha)?$/i)
    expect(b.calls).toEqual([undefined])
    expect(await recordIds(storage, b.batchKey)).toEqual(['a', 'b', 'c'])
    expect(await storage.getItem(b.outbox!.key)).toEqual({ batch: b.batchKey, events: 3, receivedAt: 1 })
    for (const id of ['a', 'b', 'c']) {
      expect(await storage.getItem(`events:d:${idKey(id)}`)).toBe(b.claim)
      const ttl = await raw.pttl(`${base}:events:d:${idKey(id)}`)
      expect(ttl).toBeGreaterThan(50_000)
      expect(ttl).toBeLessThanOrEqual(60_000)
    }
  })

  it('claims each new id with one SET NX inside the script, reading a claim only where one is there', async () => {
    const { storage, base } = fresh()
    const store = redisBatchStore(storage, 'events')!
    await store.append(batch(['b']))
    const claimsRun = async (ids: string[]) => {
      const ran = await commandsDuring(base, async () => store.append(batch(ids)), redisUrl, true)
      return ran.filter((args) => args.some((arg) => arg.includes(':d:'))).map((args) => `${args[0]!.toUpperCase()} ${args.slice(1).find((arg) => arg.includes(':d:'))!.split(':d:')[1]}${args.includes('NX') ? ' NX' : ''}`)
    }
    expect(await claimsRun(['x', 'y', 'z'])).toEqual([`SET ${idKey('x')} NX`, `SET ${idKey('y')} NX`, `SET ${idKey('z')} NX`])
    // A held id: its claim is read, and the claims just set are deleted again (nothing is left written).
    expect(await claimsRun(['p', 'b'])).toEqual([`SET ${idKey('p')} NX`, `SET ${idKey('b')} NX`, `GET ${idKey('b')}`, `DEL ${idKey('p')}`, `SET ${idKey('p')} NX`])
  })

  it('stores only the ids not held, in a second call, and names the held positions', async () => {
    const { storage, base } = fresh()
    const store = redisBatchStore(storage, 'events')!
    const first = batch(['b', 'd'])
    await store.append(first)
    const second = batch(['a', 'b', 'c', 'd', 'e'])
    let result: unknown
    const commands = await commandsDuring(base, async () => (result = await store.append(second)))
    expect(result).toEqual({ duplicates: [1, 3] })
    expect(commands).toHaveLength(2)
    expect(second.calls).toEqual([undefined, [0, 2, 4]])
    expect(await recordIds(storage, second.batchKey)).toEqual(['a', 'c', 'e'])
    expect(await storage.getItem(second.outbox!.key)).toMatchObject({ events: 3 })
    expect(await storage.getItem(`events:d:${idKey('b')}`)).toBe(first.claim)
    expect(await storage.getItem(`events:d:${idKey('c')}`)).toBe(second.claim)
  })

  it('counts the events it stores in the minute counter, in the same script, only with a counts base on the same Redis', async () => {
    const { storage, base } = fresh()
    const store = redisBatchStore(storage, 'events', { countsBase: 'stats' })!
    expect(store.countsAccepted).toBe(true)
    const counts = { key: 'stats:a:29000000', ttlMs: 7_200_000 }
    const first = { ...batch(['a', 'b']), counts }
    const commands = await commandsDuring(base, async () => store.append(first))
    expect(commands).toHaveLength(1)
    expect(await storage.getItem(counts.key)).toBe(2)
    // The call that creates the counter gives it its expiry; later calls only add to it.
    const ttl = await raw.pttl(`${base}:stats:a:29000000`)
    expect(ttl).toBeGreaterThan(7_000_000)
    expect(ttl).toBeLessThanOrEqual(7_200_000)
    await raw.pexpire(`${base}:stats:a:29000000`, 5_000_000)
    // Held ids are not counted: of five, three are new.
    const more = await commandsDuring(base, async () => store.append({ ...batch(['a', 'b', 'c', 'd', 'e']), counts }), redisUrl, true)
    expect(more.map((args) => args[0]!.toLowerCase())).toContain('incrby')
    expect(more.map((args) => args[0]!.toLowerCase())).not.toContain('pexpire')
    expect(await storage.getItem(counts.key)).toBe(5)
    // Every id held: nothing stored, nothing counted.
    await store.append({ ...batch(['a', 'e']), counts })
    expect(await storage.getItem(counts.key)).toBe(5)
    const later = await raw.pttl(`${base}:stats:a:29000000`)
    expect(later).toBeGreaterThan(4_900_000)
    expect(later).toBeLessThanOrEqual(5_000_000)

    // Without a counts base, or with the counters on another driver, nothing is counted.
    expect(redisBatchStore(storage, 'events')!.countsAccepted).toBe(false)
    const split = redisStorage(`${prefix}:split-counts`)
    split.mount('stats', memoryDriver())
    const splitStore = redisBatchStore(split, 'events', { countsBase: 'stats' })!
    expect(splitStore.countsAccepted).toBe(false)
    await splitStore.append({ ...batch(['z']), counts })
    expect(await split.getItem(counts.key)).toBeNull()
  })

  it('writes nothing when every id is held', async () => {
    const { storage, base } = fresh()
    const store = redisBatchStore(storage, 'events')!
    const first = batch(['a', 'b'])
    await store.append(first)
    const second = batch(['b', 'a'])
    let result: unknown
    const commands = await commandsDuring(base, async () => (result = await store.append(second)))
    expect(result).toEqual({ duplicates: [0, 1] })
    expect(commands).toHaveLength(1)
    expect(await storage.hasItem(second.batchKey)).toBe(false)
    expect(await storage.hasItem(second.outbox!.key)).toBe(false)
    expect(await storage.getItem(`events:d:${idKey('a')}`)).toBe(first.claim)
  })

  it('takes over a claim left without its record once it is stale, and only then', async () => {
    const { storage, base } = fresh()
    const store = redisBatchStore(storage, 'events', { staleAfterMs: 4000 })!
    const stored = batch(['kept'])
    await store.append(stored)
    const now = Date.now()
    // Claims as the claim protocol leaves them when its instance dies between claim and write.
    const left = (id: string, age: number) => raw.set(`${base}:events:d:${idKey(id)}`, `events:b:2026120207:gone-dead-x|${now - age}`, 'PX', 60_000)
    await left('stale', 5000)
    await left('fresh', 3000)
    // A stored batch's claim, however old, stays held: its record is there.
    await raw.set(`${base}:events:d:${idKey('kept')}`, `${stored.batchKey}|${now - 50_000}`, 'PX', 60_000)
    const b = batch(['stale', 'fresh', 'kept', 'new'])
    const result = await store.append({ ...b, claim: `${b.batchKey}|${now}`, claimedAt: now })
    expect(result).toEqual({ duplicates: [1, 2] })
    expect(await recordIds(storage, b.batchKey)).toEqual(['stale', 'new'])
    expect(await storage.getItem(`events:d:${idKey('stale')}`)).toBe(`${b.batchKey}|${now}`)
    expect(await storage.getItem(`events:d:${idKey('fresh')}`)).toBe(`events:b:2026120207:gone-dead-x|${now - 3000}`)
    // Without a stale age, a held claim is always held.
    await left('stale2', 5000)
    const plain = redisBatchStore(storage, 'events')!
    expect(await plain.append(batch(['stale2']))).toEqual({ duplicates: [0] })
  })

  it('stores a batch without an outbox, and a record given as bytes as the text they encode', async () => {
    const { storage } = fresh()
    const store = redisBatchStore(storage, 'events')!
    const b = batch(['é', 'x'], { outbox: false, bytes: true })
    expect(await store.append(b)).toEqual({ duplicates: [] })
    expect(await recordIds(storage, b.batchKey)).toEqual(['é', 'x'])
    expect(await storage.getKeys('events:o')).toEqual([])
  })

  it('puts keys where the storage reads them: driver base, mounts and key normalisation', async () => {
    const base = `${prefix}:mapped/sub:`
    const storage = createStorage({ driver: memoryDriver() })
    storage.mount('log', redisDriver({ url: redisUrl, base, maxRetriesPerRequest: 1 }))
    opened.push(storage)
    const store = redisBatchStore(storage, 'log:events')!
    expect(store).toBeDefined()
    const b = batch(['a'], { key: 'log/events:b:2026120207:/0001-test-x', outbox: false })
    await store.append(b)
    expect(await recordIds(storage, 'log:events:b:2026120207:0001-test-x')).toEqual(['a'])
    expect(await storage.getItem(`log:events:d:${idKey('a')}`)).toBe(b.claim)
    expect(await raw.exists(`${prefix}:mapped:sub:events:b:2026120207:0001-test-x`)).toBe(1)
  })

  it('refuses a batch whose outbox key falls on another storage mounted below the log', async () => {
    const storage = redisStorage(`${prefix}:deeper`)
    storage.mount('events:o:test', memoryDriver())
    const store = redisBatchStore(storage, 'events')!
    expect(store).toBeDefined()
    const b = batch(['deep-a'])
    expect(b.outbox!.key.startsWith('events:o:test:')).toBe(true)
    await expect(store.append(b)).rejects.toThrow(/is not on the redis storage of the event log/)
    expect(await raw.exists(`${prefix}:deeper:${b.outbox!.key}`)).toBe(0)
    // A record key below the log's part with no other mount there still maps straight.
    const plain = redisStorage(`${prefix}:deeper-plain`)
    const straight = batch(['deep-b'], { outbox: false })
    await redisBatchStore(plain, 'events')!.append(straight)
    expect(await recordIds(plain, straight.batchKey)).toEqual(['deep-b'])
  })

  it('stores each id once when several clients append the same ids at once', async () => {
    const base = `${prefix}:race`
    const stores = Array.from({ length: 4 }, () => redisStorage(base)).map((s) => redisBatchStore(s, 'events')!)
    const ids = Array.from({ length: 40 }, (_, i) => `id-${i}`)
    // Each client sends the ids in its own order, twice over, in overlapping batches.
    const batches = stores.flatMap((store, c) => [0, 1].map((round) => {
      const mine = ids.filter((_, i) => (i + c + round) % 3 !== 0).reverse()
      return { store, b: batch(c % 2 ? mine : mine.reverse()) }
    }))
    const results = await Promise.all(batches.map(({ store, b }) => store.append(b)))
    const reader = redisStorage(base)
    const storedBy = new Map<string, string[]>()
    let stored = 0
    for (const [i, { b }] of batches.entries()) {
      const kept = b.ids.filter((_, p) => !results[i]!.duplicates.includes(p))
      stored += kept.length
      const inRecord = await recordIds(reader, b.batchKey)
      expect(inRecord ?? []).toEqual(kept)
      for (const id of kept) storedBy.set(id, [...(storedBy.get(id) ?? []), b.batchKey])
    }
    expect(stored).toBe(ids.length)
    for (const id of ids) {
      expect(storedBy.get(id)).toHaveLength(1)
      const owner = batches.find(({ b }) => b.batchKey === storedBy.get(id)![0])!.b
      expect(await reader.getItem(`events:d:${idKey(id)}`)).toBe(owner.claim)
    }
  })

  describe('with the script cache emptied (a Redis of its own)', () => {
    let own: OwnRedis
    beforeAll(async () => {
      own = await startOwnRedis()
    })
    afterAll(() => own?.dispose())
    afterEach(async () => {
      const client = new Redis(own.url)
      await client.script('FLUSH')
      client.disconnect()
    })

    it('sends the script again on NOSCRIPT and stores the batch', async () => {
      const base = 'flush'
      const storage = redisStorage(base, own.url)
      const store = redisBatchStore(storage, 'events')!
      await store.append(batch(['a']))
      const admin = new Redis(own.url)
      await admin.script('FLUSH')
      admin.disconnect()
      const b = batch(['b', 'a'])
      let result: unknown
      const commands = await commandsDuring(base, async () => (result = await store.append(b)), own.url)
      expect(result).toEqual({ duplicates: [1] })
      // EVALSHA finds no script, EVAL sends it whole, then the rest goes by EVALSHA again.
      expect(commands.map((c) => c[0]!.toLowerCase())).toEqual(['evalsha', 'eval', 'evalsha'])
      expect(await recordIds(storage, b.batchKey)).toEqual(['b'])
    })

    it('stores after a restart emptied Redis and its script cache', async () => {
      const base = 'restart'
      const storage = redisStorage(base, own.url)
      const store = redisBatchStore(storage, 'events')!
      await store.append(batch(['a']))
      await own.stop()
      await own.start()
      const b = batch(['a', 'b'])
      // The client reconnects on its own; the first call on the new connection sends the script whole.
      const deadline = Date.now() + 5000
      let result: unknown
      for (;;) {
        try {
          result = await store.append(b)
          break
        } catch (error) {
          if (Date.now() > deadline) throw error
          await new Promise((r) => setTimeout(r, 100))
        }
      }
      expect(result).toEqual({ duplicates: [] })
      expect(await recordIds(storage, b.batchKey)).toEqual(['a', 'b'])
    })
  })
})
