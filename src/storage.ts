import { createStorage, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { fsDriver, removeStaleTempFiles } from './drivers/fs'

/** Redis settings; every ioredis option is accepted too. Defaults make Redis fail fast. */
export interface RedisStorageOptions {
  driver: 'redis'
  /** `redis://host:port/db`. @default REDIS_URL from the environment, else 'redis://127.0.0.1:6379' */
  url?: string
  /** Key prefix in Redis. @default 'event-ingest' */
  base?: string
  /** A command without an answer within this many ms fails. @default 2000 */
  commandTimeout?: number
  /** Reconnection attempts a queued command waits for before failing. @default 1 */
  maxRetriesPerRequest?: number
  /** @default 2000 */
  connectTimeout?: number
  [option: string]: unknown
}

/** Memory settings: the storage lives and dies with the process, so it is bounded. */
export interface MemoryStorageOptions {
  driver: 'memory'
  /**
   * Most events kept. Past it, the oldest batches are dropped, and their ids forgotten (sent
   * again, they are stored again); `log.dropped` counts them. `Infinity` keeps everything, until
   * the process runs out of memory.
   * @default 100_000
   */
  maxEvents?: number
}

/** How many events a memory storage keeps by default (about 90 MB with events of 200 bytes and their claims). */
export const DEFAULT_MEMORY_MAX_EVENTS = 100_000

/**
 * Where the event log lives: a ready unstorage `Storage`, a connection string (`memory:`,
 * `fs:<dir>`, `redis://…`), or a driver by name with its options.
 */
export type StorageOption =
  | Storage
  | string
  | MemoryStorageOptions
  | { driver: 'fs'; base: string; fsync?: boolean }
  | RedisStorageOptions

/** A resolved storage and whether event-ingest created it (and so disposes it on close). */
export interface ResolvedStorage {
  storage: Storage
  driver: string
  owned: boolean
  /** The bound of a memory storage event-ingest created (a `Storage` given ready is not bounded). */
  maxEvents?: number
}

/**
 * The event bound of a memory storage option, checked: undefined for every other option.
 * @throws TypeError naming `storage.maxEvents` when it is not a positive integer or Infinity.
 */
export function memoryMaxEvents(option: StorageOption | undefined): number | undefined {
  if (isStorage(option)) return undefined
  const spec = typeof option === 'string' ? parseStorageString(option) : (option ?? { driver: 'memory' as const })
  if (spec.driver !== 'memory') return undefined
  const max = (spec as MemoryStorageOptions).maxEvents ?? DEFAULT_MEMORY_MAX_EVENTS
  if (max !== Infinity && !(Number.isSafeInteger(max) && max >= 1)) {
    throw new TypeError(`[event-ingest] storage.maxEvents must be a positive integer or Infinity, got ${String(max)}`)
  }
  return max
}

function isStorage(value: unknown): value is Storage {
  return typeof value === 'object' && value !== null && typeof (value as Storage).getItem === 'function' && typeof (value as Storage).mount === 'function'
}

/** Turns a storage option into an unstorage `Storage`. */
export async function resolveStorage(option: StorageOption | undefined, env: Record<string, string | undefined> = process.env): Promise<ResolvedStorage> {
  if (isStorage(option)) {
    const mount = option.getMount('') as { driver: { name?: string } }
    return { storage: option, driver: mount.driver.name ?? 'custom', owned: false }
  }
  const spec = typeof option === 'string' ? parseStorageString(option) : (option ?? { driver: 'memory' as const })
  switch (spec.driver) {
    case 'memory':
      return { storage: createStorage({ driver: memoryDriver() }), driver: 'memory', owned: true, maxEvents: memoryMaxEvents(spec) }
    case 'fs':
      if (!spec.base) throw new TypeError('[event-ingest] storage { driver: "fs" } needs a base directory')
      // Temp files a crash left behind are invisible to reads; sweep old ones in the background.
      removeStaleTempFiles(spec.base, 60_000).catch(() => {})
      return { storage: createStorage({ driver: fsDriver({ base: spec.base, fsync: spec.fsync }) }), driver: 'fs', owned: true }
    case 'redis': {
      const { driver: _driver, ...rest } = spec as RedisStorageOptions
      let redisDriver: (opts: Record<string, unknown>) => { getInstance?: () => { on(event: 'error', listener: (error: Error) => void): void } }
      try {
        redisDriver = (await import('unstorage/drivers/redis')).default as never
      } catch (error) {
        throw new Error('[event-ingest] the redis storage needs the "ioredis" package: npm install ioredis', { cause: error })
      }
      const driver = redisDriver({
        url: env.REDIS_URL ?? 'redis://127.0.0.1:6379',
        base: 'event-ingest',
        commandTimeout: 2000,
        maxRetriesPerRequest: 1,
        connectTimeout: 2000,
        retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 5), 1000),
        // A command that timed out was answered with 503; replaying it after a reconnect could
        // store what the client was told was not stored.
        autoResendUnfulfilledCommands: false,
        // Listing (admin reads, pruning, outbox recovery) scans the keyspace: in large steps.
        scanCount: 1000,
        ...rest,
      }) as { getInstance?: () => { on(event: 'error', listener: (error: Error) => void): void } }
      // Connection errors surface as failed commands (503s); without a listener ioredis would also
      // print every reconnection attempt.
      driver.getInstance?.().on('error', () => {})
      return { storage: createStorage({ driver: driver as never }), driver: 'redis', owned: true }
    }
    default:
      throw new TypeError(`[event-ingest] unknown storage driver ${JSON.stringify((spec as { driver: unknown }).driver)}; use memory, fs or redis, or pass an unstorage Storage`)
  }
}

/** Parses `memory:`, `fs:<dir>` and `redis://…` / `rediss://…`. */
export function parseStorageString(value: string): Exclude<StorageOption, Storage | string> {
  const text = value.trim()
  if (text === '' || text === 'memory' || text === 'memory:') return { driver: 'memory' }
  if (text.startsWith('fs:')) {
    const base = text.slice(3)
    if (!base) throw new TypeError('[event-ingest] EVENT_STORAGE "fs:" needs a directory, like fs:./data/events')
    return { driver: 'fs', base }
  }
  if (/^rediss?:\/\//.test(text)) return { driver: 'redis', url: text }
  throw new TypeError(`[event-ingest] storage ${JSON.stringify(value)} is not one of memory:, fs:<dir>, redis://host:port/db`)
}
