/**
 * The instance registry (src/storage/registry.ts) on every kind of driver it has a strategy for:
 * memory, event-ingest's fs driver, a generic driver (the memory driver under another name), and
 * Redis (the shared server, under a prefix of this run, removed after).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Redis from 'ioredis'
import { createStorage, type Storage } from 'unstorage'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveStorage } from '../../src/storage/resolve'
import { createInstanceRegistry } from '../../src/storage/registry'
import { memoryWith } from '../helpers/drivers'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'

const T0 = Date.UTC(2026, 11, 2, 12, 0, 0)
const STALE_MS = 10_000

interface Backend {
  name: string
  before?: () => Promise<void>
  /** A storage on the backend; each call a new client or handle on the same data. */
  open(): Promise<Storage>
  /** The instance ids stored under `prefix`, read around the registry. */
  storedIds(storage: Storage, prefix: string): Promise<string[]>
  after?: () => Promise<void>
}

const fsRoot = mkdtempSync(join(tmpdir(), 'ei-registry-fs-'))
const redisBase = uniquePrefix('registry')
const opened: Storage[] = []

const keyIds = async (storage: Storage, prefix: string) => (await storage.getKeys(`${prefix}:seen`)).map((key) => key.split(':').at(-1)!).sort()

const memory = createStorage()
const generic = createStorage({ driver: memoryWith('wrapped', () => ({})) })

const backends: Backend[] = [
  // Every instance on a memory storage is in this process: they share the one storage.
  { name: 'memory', open: async () => memory, storedIds: async () => [] },
  { name: 'generic', open: async () => generic, storedIds: keyIds },
  {
    name: 'fs',
    async open() {
      const { storage } = await resolveStorage(`fs:${fsRoot}`, {})
      opened.push(storage)
      return storage
    },
    storedIds: keyIds,
  },
  {
    name: 'redis',
    before: () => requireRedis(),
    async open() {
      const { storage } = await resolveStorage({ driver: 'redis', url: redisUrl, base: redisBase }, {})
      opened.push(storage)
      return storage
    },
    async storedIds(_, prefix) {
      const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
      try {
        expect(await client.type(`${redisBase}:${prefix}:seen`)).toBe('hash')
        return Object.keys(await client.hgetall(`${redisBase}:${prefix}:seen`)).sort()
      } finally {
        client.disconnect()
      }
    },
    after: () => deletePrefix(redisBase),
  },
]

afterAll(async () => {
  await Promise.allSettled(opened.map((storage) => storage.dispose()))
  rmSync(fsRoot, { recursive: true, force: true })
})

let prefixCount = 0

for (const backend of backends) {
  describe(`instance registry on ${backend.name}`, () => {
    beforeAll(async () => {
      await backend.before?.()
    })
    afterAll(async () => {
      await backend.after?.()
    })

    /** A registry of `id` under a prefix of this test, on its own storage handle. */
    async function registries(ids: readonly string[]) {
      const prefix = `reg${++prefixCount}`
      const made = await Promise.all(ids.map(async (instanceId) => createInstanceRegistry({ storage: await backend.open(), prefix, instanceId, staleAfterMs: STALE_MS })))
      return { prefix, made, storage: await backend.open() }
    }

    const ids = (list: { id: string }[]) => list.map((seen) => seen.id).sort()

    it('reads an instance as live until staleAfterMs has passed since it registered, then stale', async () => {
      const { made: [a, b] } = await registries(['a', 'b'])
      await a!.register(T0)
      await b!.register(T0 - 5000)
      expect(await a!.read(T0)).toEqual({ live: expect.arrayContaining([{ id: 'a', seenAt: T0 }, { id: 'b', seenAt: T0 - 5000 }]), stale: [] })
      const later = await b!.read(T0 + STALE_MS - 2000)
      expect(later.live).toEqual([{ id: 'a', seenAt: T0 }])
      expect(later.stale).toEqual([{ id: 'b', seenAt: T0 - 5000 }])
      expect(ids((await a!.read(T0 + STALE_MS + 1)).stale)).toEqual(['a', 'b'])
    })

    it('keeps one entry per instance, with its latest time', async () => {
      const { made: [a] } = await registries(['a'])
      await a!.register(T0)
      await a!.register(T0 + 1000)
      expect(await a!.read(T0 + 1000)).toEqual({ live: [{ id: 'a', seenAt: T0 + 1000 }], stale: [] })
    })

    it('loses no instance when many register at the same moment, again and again', async () => {
      const names = Array.from({ length: 12 }, (_, i) => `inst_${i}`)
      const { prefix, made, storage } = await registries(names)
      for (let round = 0; round < 5; round++) {
        await Promise.all(made.map((registry) => registry.register(T0 + round)))
        const view = await made[0]!.read(T0 + round)
        expect(ids(view.live), `round ${round}`).toEqual([...names].sort())
        expect(view.live.every((seen) => seen.seenAt === T0 + round)).toBe(true)
      }
      if (backend.name !== 'memory') expect(await backend.storedIds(storage, prefix)).toEqual([...names].sort())
    })

    it('removes a stale entry only while it still holds the time it was read with', async () => {
      const { made: [a, b, c] } = await registries(['a', 'b', 'c'])
      await a!.register(T0 + STALE_MS * 2)
      await b!.register(T0)
      await c!.register(T0)
      const { stale } = await a!.read(T0 + STALE_MS * 2)
      expect(ids(stale)).toEqual(['b', 'c'])
      // c comes back between the read and the removal: it keeps its entry.
      await c!.register(T0 + STALE_MS * 2)
      expect(await a!.removeStale(stale)).toBe(1)
      const after = await a!.read(T0 + STALE_MS * 2)
      expect(ids(after.live)).toEqual(['a', 'c'])
      expect(after.stale).toEqual([])
      expect(await a!.removeStale(stale)).toBe(0)
    })

    it('reads an instance that registered at 0 (gone) as stale at once', async () => {
      const { made: [a, b] } = await registries(['a', 'b'])
      await a!.register(T0)
      await b!.register(T0)
      await b!.register(0)
      expect(await a!.read(T0)).toEqual({ live: [{ id: 'a', seenAt: T0 }], stale: [{ id: 'b', seenAt: 0 }] })
    })

    it('keeps registries under different prefixes apart', async () => {
      const first = await registries(['a'])
      const second = await registries(['b'])
      await first.made[0]!.register(T0)
      await second.made[0]!.register(T0)
      expect(ids((await first.made[0]!.read(T0)).live)).toEqual(['a'])
      expect(ids((await second.made[0]!.read(T0)).live)).toEqual(['b'])
    })
  })
}
