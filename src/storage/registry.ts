import { normalizeKey, type Storage } from 'unstorage'
import { claimBackend } from './capabilities'
import { createClaimStore } from './claims'
import { parseSeenKey, seenBase, seenKey } from './layout'

/**
 * The instances that share a storage, each with when it was last seen: the stats window's (whose
 * buckets a snapshot sums) and the forwarder's (whose outboxes are adopted when they die) are two
 * registries of this one kind, under their own prefixes.
 *
 * No shared record is read, changed and written back, so instances registering at the same moment
 * never lose each other's entries:
 *
 * - Redis: one hash, `<prefix>:seen`, an `HSET` per registration; a stale entry is removed by a
 *   script that deletes it only if it still holds the time it was read with.
 * - memory: a table beside the driver's map (every instance on it is in this process), changed
 *   synchronously.
 * - other drivers: one key per instance, `<prefix>:seen:<id>`, listed under `<prefix>:seen`; a
 *   stale one is removed only while it still holds the time read (under the fs driver's lock
 *   where it has one, else a read then a remove).
 */

/** One instance as the registry last saw it. */
export interface SeenInstance {
  id: string
  /** When it last registered (ms); 0 for an instance that said it is gone. */
  seenAt: number
}

/** The registry as read at one moment. */
export interface RegistryView {
  /** Seen within `staleAfterMs`. */
  live: SeenInstance[]
  /** Not seen for longer: dead or gone. */
  stale: SeenInstance[]
}

export interface InstanceRegistry {
  /** Records this instance as seen at `at` (0: gone, so others need not wait for it to go stale). */
  register(at: number): Promise<void>
  /** Every instance registered, split by whether it was seen within `staleAfterMs` before `at`. */
  read(at: number): Promise<RegistryView>
  /**
   * Removes these entries where they still hold the `seenAt` given (an instance that registered
   * again since keeps its entry). Resolves with how many were removed.
   */
  removeStale(stale: readonly SeenInstance[]): Promise<number>
}

export interface InstanceRegistryOptions {
  storage: Storage
  /** Key prefix of the registry: its entries live at `<prefix>:seen` (see layout.ts). */
  prefix: string
  /** This instance. */
  instanceId: string
  /** How long an instance may go unseen and still count as live, in ms. */
  staleAfterMs: number
}

/** Where the entries are kept: picked once, by what the driver at `<prefix>:seen` can do. */
interface Entries {
  set(id: string, at: number): Promise<void>
  all(): Promise<SeenInstance[]>
  /** Removes `id` if it still holds `at`; resolves whether it did. */
  removeIf(id: string, at: number): Promise<boolean>
}

/** Creates the registry of `instanceId` under `prefix`. */
export function createInstanceRegistry(options: InstanceRegistryOptions): InstanceRegistry {
  const { instanceId, staleAfterMs } = options
  const entries = entriesFor(options.storage, options.prefix)
  return {
    register: (at) => entries.set(instanceId, at),
    async read(at) {
      const view: RegistryView = { live: [], stale: [] }
      for (const seen of await entries.all()) (at - seen.seenAt <= staleAfterMs ? view.live : view.stale).push(seen)
      return view
    },
    async removeStale(stale) {
      const removed = await Promise.all(stale.map((seen) => entries.removeIf(seen.id, seen.seenAt)))
      return removed.filter(Boolean).length
    },
  }
}

function entriesFor(storage: Storage, prefix: string): Entries {
  const base = seenBase(prefix)
  const backend = claimBackend(storage, base)
  if (backend.kind === 'redis') return redisEntries(backend.client as RedisHashes, backend.fullKey(base))
  if (backend.kind === 'memory') return tableEntries(memoryTable(backend.map, base))
  return keyEntries(storage, prefix)
}

interface RedisHashes {
  hset(key: string, field: string, value: string): Promise<unknown>
  hgetall(key: string): Promise<Record<string, string>>
  eval(script: string, numKeys: number, ...args: unknown[]): Promise<unknown>
}

// Compare-and-delete in one step on the server: an instance that registers between the read and
// the removal keeps its entry.
const REMOVE_IF_SCRIPT = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) else return 0 end"

function redisEntries(redis: RedisHashes, key: string): Entries {
  return {
    async set(id, at) {
      await redis.hset(key, id, String(at))
    },
    async all() {
      return seenList(Object.entries(await redis.hgetall(key)))
    },
    async removeIf(id, at) {
      return Number(await redis.eval(REMOVE_IF_SCRIPT, 1, key, id, String(at))) === 1
    },
  }
}

// Memory-driver registries, per driver map and base: every instance on one memory storage shares them.
const memoryTables = new WeakMap<object, Map<string, Map<string, number>>>()

function memoryTable(map: Map<string, unknown>, base: string): Map<string, number> {
  let byBase = memoryTables.get(map)
  if (!byBase) memoryTables.set(map, (byBase = new Map()))
  let table = byBase.get(base)
  if (!table) byBase.set(base, (table = new Map()))
  return table
}

function tableEntries(table: Map<string, number>): Entries {
  return {
    set: async (id, at) => void table.set(id, at),
    all: async () => [...table].map(([id, seenAt]) => ({ id, seenAt })),
    async removeIf(id, at) {
      if (table.get(id) !== at) return false
      table.delete(id)
      return true
    },
  }
}

function keyEntries(storage: Storage, prefix: string): Entries {
  // The claim store's release is the compare-and-delete: atomic where the driver offers it.
  const claims = createClaimStore(storage, seenBase(prefix))
  return {
    async set(id, at) {
      await storage.setItem(seenKey(prefix, id), String(at))
    },
    async all() {
      const keys = await storage.getKeys(seenBase(prefix))
      const values = await claims.read(keys)
      return seenList(keys.map((key, i) => [parseSeenKey(normalizeKey(prefix), key) ?? '', values[i]]))
    },
    async removeIf(id, at) {
      const key = seenKey(prefix, id)
      const [held] = await claims.read([key])
      if (held !== String(at)) return false
      await claims.release([key], String(at))
      return true
    },
  }
}

/** Entries read as text, those that name an instance and a time. */
function seenList(pairs: readonly [string, string | null | undefined][]): SeenInstance[] {
  const list: SeenInstance[] = []
  for (const [id, value] of pairs) {
    const seenAt = Number(value)
    if (id && value && Number.isFinite(seenAt)) list.push({ id, seenAt })
  }
  return list
}
