import type { Storage } from 'unstorage'
import { claimBackend, memoryClaimTable } from './capabilities'
import { eachLimited, nextTurn } from '../base/each'
import { claimKey } from './layout'

/**
 * Set-if-absent over a storage: the primitive that makes ingest idempotent by id. Each call returns,
 * per key, `null` when this caller now holds the key, or the value already there.
 *
 * Atomic where the driver allows it (see src/storage/capabilities.ts): Redis (`SET NX GET`, one
 * round trip per batch), the memory driver (a synchronous check-and-set), and event-ingest's fs
 * driver (hard link, atomic across processes). Other drivers get a read-then-write that is atomic
 * only within one process.
 *
 * The same holds for `replace`, the compare-and-set that takes a stale claim over: a Lua script on
 * Redis, a synchronous check on memory, a per-value lock file (hard link) on the fs driver, and a
 * read, compare, then write elsewhere (two instances that take one claim over at the same moment
 * can then both win it: see the README's Guarantees).
 */
export interface ClaimStore {
  /** `claim` is atomic across every process sharing the storage. */
  readonly atomic: boolean
  /**
   * Claims every key not held yet. A key repeated within one call is claimed at its first place;
   * the later places answer what that one holds then (`value` when it was just claimed).
   */
  claim(keys: readonly string[], value: string, ttlMs: number): Promise<(string | null)[]>
  /** Overwrites keys, whatever they hold. */
  overwrite(keys: readonly string[], value: string, ttlMs: number): Promise<void>
  /**
   * Compare-and-set: sets each key to `value` only where it still holds `expected[i]` (taking a
   * stale claim over). Resolves, per key, whether it was set: of several callers replacing one
   * value at once, one wins.
   */
  replace(keys: readonly string[], expected: readonly string[], value: string, ttlMs: number): Promise<boolean[]>
  /** Removes keys that still hold `value`. */
  release(keys: readonly string[], value: string): Promise<void>
  read(keys: readonly string[]): Promise<(string | null)[]>
  /**
   * Removes claims under `base` whose value `isExpired` says are over. Redis expires claims by
   * itself; other drivers keep them until this runs (from `prune`). `signal` stops it early.
   */
  expire(base: string, isExpired: (value: string) => boolean, signal?: AbortSignal): Promise<number>
}

interface RedisLike {
  pipeline(): { set(...args: unknown[]): unknown; get(key: string): unknown; eval(...args: unknown[]): unknown; exec(): Promise<[Error | null, unknown][] | null> }
  eval(script: string, numKeys: number, ...args: unknown[]): Promise<unknown>
}

function execResults(results: [Error | null, unknown][] | null): unknown[] {
  if (!results) throw new Error('[event-ingest] redis pipeline was aborted')
  return results.map(([error, value]) => {
    if (error) throw error
    return value
  })
}

const RELEASE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
// Compare-and-set in one step on the server: no other command runs between the GET and the SET.
const REPLACE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 else return 0 end"

/**
 * Claims keys one call each, all at once, with a repeated key claimed at its first place only: its
 * later places answer what the first found, or `value` when the first claimed it (run in parallel,
 * a repeat could otherwise win the key, or, read-then-write, claim it a second time).
 */
function claimEach(keys: readonly string[], value: string, claimOne: (key: string) => Promise<string | null>): Promise<(string | null)[]> {
  const first = new Map<string, Promise<string | null>>()
  return Promise.all(keys.map(async (key) => {
    const earlier = first.get(key)
    if (earlier) return (await earlier) ?? value
    const result = claimOne(key)
    first.set(key, result)
    return result
  }))
}

/** Picks the best claim strategy for the driver mounted at `prefix` (see claimBackend). */
export function createClaimStore(storage: Storage, prefix: string): ClaimStore {
  const backend = claimBackend(storage, prefix)
  if (backend.kind === 'redis') return redisClaims(backend.client as RedisLike, backend.fullKey)
  if (backend.kind === 'memory') return mapClaims(backend.map, backend.relative)
  const generic = genericClaims(storage)
  return backend.kind === 'fs' ? fsClaims(generic, backend.instance, backend.relative) : generic
}

function redisClaims(redis: RedisLike, full: (key: string) => string): ClaimStore {
  return {
    atomic: true,
    async claim(keys, value, ttlMs) {
      const pipeline = redis.pipeline()
      for (const key of keys) pipeline.set(full(key), value, 'PX', ttlMs, 'NX', 'GET')
      return execResults(await pipeline.exec()).map((v) => (v === null || v === undefined ? null : String(v)))
    },
    async overwrite(keys, value, ttlMs) {
      const pipeline = redis.pipeline()
      for (const key of keys) pipeline.set(full(key), value, 'PX', ttlMs)
      execResults(await pipeline.exec())
    },
    async replace(keys, expected, value, ttlMs) {
      if (keys.length === 0) return []
      const pipeline = redis.pipeline()
      keys.forEach((key, i) => pipeline.eval(REPLACE_SCRIPT, 1, full(key), expected[i], value, Math.max(1, Math.ceil(ttlMs))))
      return execResults(await pipeline.exec()).map((v) => Number(v) === 1)
    },
    async release(keys, value) {
      await Promise.all(keys.map((key) => redis.eval(RELEASE_SCRIPT, 1, full(key), value)))
    },
    async read(keys) {
      const pipeline = redis.pipeline()
      for (const key of keys) pipeline.get(full(key))
      return execResults(await pipeline.exec()).map((v) => (v === null || v === undefined ? null : String(v)))
    },
    // Every claim carries a TTL in Redis.
    expire: async () => 0,
  }
}

function mapClaims(map: Map<string, unknown>, relative: (key: string) => string): ClaimStore {
  return {
    atomic: true,
    async claim(keys, value) {
      return keys.map((key) => {
        const k = relative(key)
        const existing = map.get(k)
        if (existing !== undefined && existing !== null) return String(existing)
        map.set(k, value)
        return null
      })
    },
    async overwrite(keys, value) {
      for (const key of keys) map.set(relative(key), value)
    },
    async replace(keys, expected, value) {
      return keys.map((key, i) => {
        const k = relative(key)
        const held = map.get(k)
        if (held === undefined || held === null || String(held) !== expected[i]) return false
        map.set(k, value)
        return true
      })
    },
    async release(keys, value) {
      for (const key of keys) if (map.get(relative(key)) === value) map.delete(relative(key))
    },
    async read(keys) {
      return keys.map((key) => {
        const v = map.get(relative(key))
        return v === undefined || v === null ? null : String(v)
      })
    },
    async expire(base, isExpired) {
      const start = relative(`${base}:`)
      let removed = 0
      for (const [key, value] of map) {
        if (key.startsWith(start) && isExpired(String(value))) {
          map.delete(key)
          removed++
        }
      }
      return removed
    },
  }
}

function genericClaims(storage: Storage): ClaimStore {
  return {
    atomic: false,
    async claim(keys, value, ttlMs) {
      return claimEach(keys, value, async (key) => {
        const existing = await storage.getItem<string>(key)
        if (existing !== null && existing !== undefined) return String(existing)
        await storage.setItem(key, value, { ttl: Math.ceil(ttlMs / 1000) })
        return null
      })
    },
    async overwrite(keys, value, ttlMs) {
      await Promise.all(keys.map((key) => storage.setItem(key, value, { ttl: Math.ceil(ttlMs / 1000) })))
    },
    async replace(keys, expected, value, ttlMs) {
      // A read, then a write: atomic only against other callers in this process that take turns
      // (the event log lets one batch at a time take an id over); see the interface.
      return Promise.all(keys.map(async (key, i) => {
        if ((await storage.getItemRaw(key))?.toString() !== expected[i]) return false
        await storage.setItem(key, value, { ttl: Math.ceil(ttlMs / 1000) })
        return true
      }))
    },
    async release(keys, value) {
      await Promise.all(keys.map(async (key) => {
        if ((await storage.getItemRaw(key))?.toString() === value) await storage.removeItem(key)
      }))
    },
    async read(keys) {
      return Promise.all(keys.map(async (key) => {
        const v = await storage.getItemRaw(key)
        return v === null || v === undefined ? null : v.toString()
      }))
    },
    async expire(base, isExpired, signal) {
      let removed = 0
      // A few at a time: one by one, each removal would wait for its own flush on some drivers.
      await eachLimited(await storage.getKeys(base), 16, async (key) => {
        if (signal?.aborted) return
        const value = await storage.getItemRaw(key)
        if (value !== null && value !== undefined && isExpired(value.toString())) {
          await storage.removeItem(key)
          removed++
        }
      })
      return removed
    },
  }
}

type FsClaimInstance = Extract<ReturnType<typeof claimBackend>, { kind: 'fs' }>['instance']

/** The generic store with the fs driver's atomic primitives where it has them. */
function fsClaims(generic: ClaimStore, fsInstance: FsClaimInstance, relative: (key: string) => string): ClaimStore {
  const { replaceAll, removeAllHolding } = fsInstance
  return {
    ...generic,
    atomic: true,
    // Without `replaceAll` (a driver that only claims), a take-over is a read, then a write.
    ...(typeof replaceAll === 'function' && {
      replace: async (keys: readonly string[], expected: readonly string[], value: string) =>
        keys.length === 0 ? [] : replaceAll.call(fsInstance, keys.map(relative), expected, value),
    }),
    // Under the lock `replaceAll` takes: a release never removes a claim just taken over.
    ...(typeof removeAllHolding === 'function' && {
      release: async (keys: readonly string[], value: string) => {
        await removeAllHolding.call(fsInstance, [...new Set(keys)].map(relative), value)
      },
    }),
    // A batch's claims are one file: read once, not once per id.
    expire: (base, isExpired, signal) => fsInstance.removeExpired(relative(base), isExpired, signal),
    async claim(keys, value) {
      // All of a batch's claims are one file under as many names (hard links): one write and one
      // flush per batch, not per id. A key repeated in the call is claimed at its first place.
      const distinct = [...new Set(keys)]
      const results = await fsInstance.setIfAbsentAll(distinct.map(relative), value)
      const held = new Map(distinct.map((key, i) => [key, results[i]!]))
      const seen = new Set<string>()
      return keys.map((key) => {
        const result = held.get(key)!
        if (seen.has(key)) return result ?? value
        seen.add(key)
        return result
      })
    },
  }
}

/**
 * {@link ClaimStore} over event ids rather than storage keys (the event log's dedupe claims), with
 * `expire` over all of them, since they share one base.
 */
export type IdClaims = Omit<ClaimStore, 'expire'> & {
  /** Removes claims whose value `isExpired` says are over; returns how many. */
  expire(isExpired: (value: string) => boolean, signal?: AbortSignal): Promise<number>
  /** Claims live in this process's memory: every call answers at once, with no I/O to time out. */
  readonly local?: boolean
}

/**
 * Dedupe claims by event id under `base` (`events:d`). On a storage driver each id is one key,
 * `claimKey(base, id)`. On the memory driver the claims live beside the driver's map in a
 * {@link ClaimTable} keyed by the id itself (see memoryClaimTable), unless `keyed` asks for keys
 * (a store of the host's own writes its claims as keys, wherever the storage is).
 */
export function createIdClaims(storage: Storage, base: string, options: { keyed?: boolean } = {}): IdClaims {
  const table = options.keyed ? undefined : memoryClaimTable(storage, base)
  if (table) {
    return {
      atomic: true,
      local: true,
      claim: async (ids, value) => table.claim(ids, value),
      overwrite: async (ids, value) => table.overwrite(ids, value),
      replace: async (ids, expected, value) => table.replace(ids, expected, value),
      release: async (ids, value) => table.release(ids, value),
      read: async (ids) => ids.map((id) => table.read(id)),
      // A slice of the table per turn of the event loop: the table holds every id of the window.
      expire: (isExpired, signal) => table.expire(isExpired, nextTurn, signal),
    }
  }
  const store = createClaimStore(storage, base)
  const keysOf = (ids: readonly string[]) => ids.map((id) => claimKey(base, id))
  return {
    atomic: store.atomic,
    claim: (ids, value, ttlMs) => store.claim(keysOf(ids), value, ttlMs),
    overwrite: (ids, value, ttlMs) => store.overwrite(keysOf(ids), value, ttlMs),
    replace: (ids, expected, value, ttlMs) => store.replace(keysOf(ids), expected, value, ttlMs),
    release: (ids, value) => store.release(keysOf(ids), value),
    read: (ids) => store.read(keysOf(ids)),
    expire: (isExpired, signal) => store.expire(base, isExpired, signal),
  }
}
