import { normalizeKey, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import type { AtomicBatchStore } from './atomic'
import { ClaimTable } from './claim-table'
import type { FsDriverInstance } from './fs-driver'
import { batchBase, claimBase, hoursKey, isNormalKey, outboxBase } from './layout'
import { MemoryBatchStore, type DriverMap } from './memory-store'
import { postgresBatchStore } from './postgres-store'
import { redisBatchStore } from './redis-store'

/**
 * What the driver mounted at a key can do, decided here and nowhere else: the event log and the
 * claim stores ask this module, never a driver's name.
 *
 * - a one-step batch write ({@link AtomicBatchStore}): the memory driver (one synchronous call);
 * - claims atomic across processes: event-ingest's fs driver (hard links), Redis (`SET NX`,
 *   scripts); atomic in the one process there is: the memory driver;
 * - writes that are done when they return, with nothing to time out: the memory driver;
 * - writes that end with the process that makes them (so a dead process's claims can be taken
 *   over at once): event-ingest's fs driver.
 */

interface MountedDriver {
  name?: string
  options?: { base?: string }
  getInstance?: () => unknown
}

interface Mount {
  base: string
  driver: MountedDriver
}

function mountOf(storage: Storage, key: string): Mount {
  return storage.getMount(key) as Mount
}

/**
 * The key a driver is handed for `key`: unstorage normalises the key, then cuts the mount's base
 * off it (`storage.getItem(key)` reads the driver's `relativeKey`).
 */
function relativeTo(mount: Mount): (key: string) => string {
  const cut = mount.base.length
  return (key) => (isNormalKey(key) ? key : normalizeKey(key)).slice(cut)
}

/** Named memory with its Map at hand: claims kept beside it are atomic in the process. */
function memoryMap(driver: MountedDriver): Map<string, unknown> | undefined {
  if (driver.name !== 'memory' || typeof driver.getInstance !== 'function') return undefined
  const map = driver.getInstance()
  return map instanceof Map ? (map as Map<string, unknown>) : undefined
}

// unstorage's memory driver, to tell it from a driver built over it: a driver that keeps the
// memory driver's name and Map but reads or writes its own way (a wrapper adding latency or
// failures) does not write when it returns, and takes the protocol of the drivers it imitates.
const reference = memoryDriver() as unknown as Record<string, unknown>
const itemMethods = ['hasItem', 'getItem', 'getItemRaw', 'setItem', 'setItemRaw', 'removeItem', 'getKeys'] as const

function isPlainMemory(driver: MountedDriver): boolean {
  if (!memoryMap(driver)) return false
  const own = driver as Record<string, unknown>
  return itemMethods.every((name) => typeof own[name] === 'function' && String(own[name]) === String(reference[name]))
}

/** The claim primitives of the driver at `base`. */
export type ClaimBackend =
  | { kind: 'redis'; client: unknown; fullKey: (key: string) => string }
  | { kind: 'memory'; map: Map<string, unknown>; relative: (key: string) => string }
  | { kind: 'fs'; instance: Partial<Pick<FsDriverInstance, 'replaceAll' | 'removeAllHolding'>> & Pick<FsDriverInstance, 'setIfAbsentAll' | 'removeExpired'>; relative: (key: string) => string }
  | { kind: 'generic' }

/** How claims under `base` are made atomic, if at all (see ClaimStore). */
export function claimBackend(storage: Storage, base: string): ClaimBackend {
  const mount = mountOf(storage, base)
  const { driver } = mount
  const relative = (key: string) => key.slice(mount.base.length)
  if (driver.name === 'redis' && typeof driver.getInstance === 'function') {
    const prefix = driver.options?.base?.replace(/:$/, '')
    return { kind: 'redis', client: driver.getInstance(), fullKey: (key) => [prefix, relative(key)].filter((part) => part).join(':') }
  }
  const map = memoryMap(driver)
  if (map) return { kind: 'memory', map, relative }
  if (driver.name === 'event-ingest-fs' && typeof driver.getInstance === 'function') {
    return { kind: 'fs', instance: driver.getInstance() as never, relative }
  }
  return { kind: 'generic' }
}

// Memory-driver claims, per driver instance and base: every log on one memory storage shares them.
const memoryClaims = new WeakMap<object, Map<string, ClaimTable>>()

/**
 * The {@link ClaimTable} of the memory driver at `base`, shared by every log on that driver; undefined
 * on other drivers. Keyed by the id itself: no key encoding, and no heap object per id.
 */
export function memoryClaimTable(storage: Storage, base: string): ClaimTable | undefined {
  const map = memoryMap(mountOf(storage, base).driver)
  if (!map) return undefined
  let byBase = memoryClaims.get(map)
  if (!byBase) memoryClaims.set(map, (byBase = new Map()))
  let table = byBase.get(base)
  if (!table) byBase.set(base, (table = new ClaimTable()))
  return table
}

/** The memory driver's Map at `key` when that driver writes as it returns; undefined elsewhere. */
export function localMap(storage: Storage, key: string): DriverMap | undefined {
  const mount = mountOf(storage, key)
  if (!isPlainMemory(mount.driver)) return undefined
  return { map: memoryMap(mount.driver)!, relative: relativeTo(mount) }
}

/**
 * Whether every write to the drivers at `keys` is a system call of this process (event-ingest's fs
 * driver): once the process has ended, nothing it sent can land later. A network store may still
 * apply a command its sender sent just before it died.
 */
export function writesEndWithProcess(storage: Storage, keys: readonly string[]): boolean {
  return keys.every((key) => mountOf(storage, key).driver.name === 'event-ingest-fs')
}

/** Whether the driver at `key` keeps a record's bytes as given (so a body is stored without a copy to text). */
export function keepsBytes(storage: Storage, key: string): boolean {
  return memoryMap(mountOf(storage, key).driver) !== undefined
}

/** What the log's write strategy is chosen from. */
export interface BatchStoreOptions {
  prefix: string
  /** Whether the log writes outbox entries (their keys must be on the same driver). */
  outbox: boolean
  windowMs: number
  maxEvents?: number
  maxBytes?: number
  onError?: (error: unknown) => void
  /** Age at which a claim with no record behind it is free (the claim protocol's stale age). */
  staleAfterMs?: number
  /** Where the minute counters of stored events live, for a store that can count in its batch write. */
  countsBase?: string
}

/**
 * The one-step batch write the storage offers for a log under `prefix`, if any: the memory
 * driver, when records, outbox entries, claims and the hour index all live in the one Map.
 */
export function atomicBatchStore(storage: Storage, options: BatchStoreOptions): AtomicBatchStore | undefined {
  const { prefix } = options
  const keys = [batchBase(prefix), claimBase(prefix), hoursKey(prefix), ...(options.outbox ? [outboxBase(prefix)] : [])]
  const maps = keys.map((key) => localMap(storage, key))
  const local = maps[0]
  if (local && maps.every((m) => m?.map === local.map)) {
    return new MemoryBatchStore({ ...options, local, claims: memoryClaimTable(storage, claimBase(prefix))! })
  }
  // Redis: one script per batch. A claim with no record behind it (left by an instance of an
  // earlier version that used the claim protocol) is free once the claim protocol would take it over.
  // PostgreSQL: one transaction per batch, the events table's primary key as the claim.
  return postgresBatchStore(storage, prefix) ?? redisBatchStore(storage, prefix, { staleAfterMs: options.staleAfterMs, countsBase: options.countsBase })
}
