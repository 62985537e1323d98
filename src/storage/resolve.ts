import { randomBytes } from 'node:crypto'
import { mkdir, unlink, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createStorage, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { fsDriver, removeStaleTempFiles } from './fs-driver'
import { postgresDriver, type PgPool, type PostgresDriverInstance } from './postgres-driver'

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

/** PostgreSQL settings: events as rows of `<schema>.events`, everything else in `<schema>.kv`. */
export interface PostgresStorageOptions {
  driver: 'postgres'
  /** `postgres://user@host:port/db`. @default DATABASE_URL from the environment, else 'postgres://postgres@127.0.0.1:5432/test' */
  url?: string
  /** The schema holding the tables. @default 'event_ingest' */
  schema?: string
  /** Create the schema and tables on start, under an advisory lock; false: check they exist (see docs/postgres-schema.sql). @default true */
  createSchema?: boolean
  /** Most connections in the pool. @default 10 */
  max?: number
  /** A connection not made within this many ms fails. @default 2000 */
  connectTimeout?: number
  /** A statement running longer than this many ms is cancelled by the server. @default 5000 */
  statementTimeout?: number
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
  /**
   * Most bytes of stored batches kept (the bodies as received), whichever of this and `maxEvents`
   * is reached first: large events reach it long before `maxEvents`. Past it, the oldest batches
   * are dropped as above. `Infinity` turns this bound off.
   * @default 134_217_728 (128 MiB)
   */
  maxBytes?: number
}

/** How many events a memory storage keeps by default (about 90 MB with events of 200 bytes and their claims). */
export const DEFAULT_MEMORY_MAX_EVENTS = 100_000

/** How many bytes of batches a memory storage keeps by default (128 MiB). */
export const DEFAULT_MEMORY_MAX_BYTES = 134_217_728

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
  | PostgresStorageOptions

/** A resolved storage and whether event-ingest created it (and so disposes it on close). */
export interface ResolvedStorage {
  storage: Storage
  driver: string
  owned: boolean
  /** Whether the storage is known to be unreachable right now (it said so once, through `onUnreachable`). */
  unreachable(): boolean
  /** The bounds of a memory storage event-ingest created (a `Storage` given ready is not bounded). */
  maxEvents?: number
  maxBytes?: number
}

/** What {@link resolveStorage} does besides building the storage. */
export interface ResolveStorageOptions {
  /** Told once per outage, in one line, that a storage created here cannot be reached (it keeps retrying). */
  onUnreachable?: (error: Error) => void
}

/** The part of an ioredis client the connection watch uses. */
interface RedisClient {
  status: string
  options: { host?: string; port?: number; path?: string | null; connectTimeout?: number }
  on(event: 'error', listener: (error: Error & { code?: string }) => void): unknown
  on(event: 'ready', listener: () => void): unknown
  once(event: 'error', listener: (error: Error & { code?: string }) => void): unknown
  once(event: 'ready', listener: () => void): unknown
  off(event: 'error' | 'ready', listener: (...args: never[]) => void): unknown
  connect(): Promise<void>
}

/**
 * The bounds of a memory storage option, checked: undefined for every other option.
 * @throws TypeError naming `storage.maxEvents` or `storage.maxBytes` when it is not a positive integer or Infinity.
 */
export function memoryBounds(option: StorageOption | undefined): { maxEvents: number; maxBytes: number } | undefined {
  if (isStorage(option)) return undefined
  const spec = typeof option === 'string' ? parseStorageString(option) : (option ?? { driver: 'memory' as const })
  if (spec.driver !== 'memory') return undefined
  const bound = (name: 'maxEvents' | 'maxBytes', fallback: number) => {
    const max = (spec as MemoryStorageOptions)[name] ?? fallback
    if (max !== Infinity && !(Number.isSafeInteger(max) && max >= 1)) {
      throw new TypeError(`[event-ingest] storage.${name} must be a positive integer or Infinity, got ${String(max)}`)
    }
    return max
  }
  return { maxEvents: bound('maxEvents', DEFAULT_MEMORY_MAX_EVENTS), maxBytes: bound('maxBytes', DEFAULT_MEMORY_MAX_BYTES) }
}

function isStorage(value: unknown): value is Storage {
  return typeof value === 'object' && value !== null && typeof (value as Storage).getItem === 'function' && typeof (value as Storage).mount === 'function'
}

const reachable = () => false

/**
 * Checks a storage option without touching the storage: a typo (an unknown driver or connection
 * string, a missing directory, a Redis URL of another scheme) fails when the core is created.
 */
export function checkStorageOption(option: unknown): void {
  if (option === undefined || isStorage(option)) return
  if (typeof option === 'string') {
    parseStorageString(option)
    return
  }
  if (typeof option !== 'object' || option === null) {
    throw new TypeError(`[event-ingest] storage must be a connection string, { driver, ... } or an unstorage Storage, got ${typeof option === 'function' ? 'a function' : String(option)}`)
  }
  const spec = option as { driver?: unknown; base?: unknown; url?: unknown; fsync?: unknown }
  switch (spec.driver) {
    case 'memory':
      memoryBounds(option as StorageOption)
      return
    case 'fs':
      if (typeof spec.base !== 'string' || spec.base.trim() === '') throw new TypeError(`[event-ingest] storage { driver: "fs" } needs a base directory (a non-empty string), got ${JSON.stringify(spec.base)}`)
      if (spec.fsync !== undefined && typeof spec.fsync !== 'boolean') throw new TypeError(`[event-ingest] storage.fsync must be a boolean, got ${JSON.stringify(spec.fsync)}`)
      return
    case 'redis':
      if (spec.url !== undefined && (typeof spec.url !== 'string' || !/^rediss?:\/\/./.test(spec.url.trim()))) {
        throw new TypeError(`[event-ingest] storage.url must be a redis:// or rediss:// URL, got ${JSON.stringify(redactUrl(String(spec.url)))}`)
      }
      for (const name of ['commandTimeout', 'connectTimeout'] as const) {
        const value = (spec as Record<string, unknown>)[name]
        if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value > 0)) throw new RangeError(`[event-ingest] storage.${name} must be a positive number of ms, got ${String(value)}`)
      }
      return
    case 'postgres':
      postgresSettings(option as PostgresStorageOptions, {})
      return
    default:
      throw new TypeError(`[event-ingest] unknown storage driver ${JSON.stringify(spec.driver)}; use memory, fs, redis or postgres, or pass an unstorage Storage`)
  }
}

/**
 * Turns a storage option into an unstorage `Storage`, ready to use: an fs directory is created and
 * checked for writing (a directory that cannot be used rejects, naming it and why), a Redis client
 * has made its first connection attempt (a Redis that cannot be reached is reported through
 * `onUnreachable` and retried in the background, so a host may start before its Redis).
 */
export async function resolveStorage(option: StorageOption | undefined, env: Record<string, string | undefined> = process.env, options: ResolveStorageOptions = {}): Promise<ResolvedStorage> {
  if (isStorage(option)) {
    const mount = option.getMount('') as { driver: { name?: string } }
    return { storage: option, driver: mount.driver.name ?? 'custom', owned: false, unreachable: reachable }
  }
  checkStorageOption(option)
  const spec = typeof option === 'string' ? parseStorageString(option) : (option ?? { driver: 'memory' as const })
  switch (spec.driver) {
    case 'memory':
      return { storage: createStorage({ driver: memoryDriver() }), driver: 'memory', owned: true, unreachable: reachable, ...memoryBounds(spec) }
    case 'fs':
      await checkDirectory(spec.base)
      // Temp files a crash left behind are invisible to reads; sweep old ones in the background.
      removeStaleTempFiles(spec.base, 60_000).catch(() => {})
      return { storage: createStorage({ driver: fsDriver({ base: spec.base, fsync: spec.fsync }) }), driver: 'fs', owned: true, unreachable: reachable }
    case 'redis': {
      const { driver: _driver, ...rest } = spec as RedisStorageOptions
      let redisDriver: (opts: Record<string, unknown>) => { getInstance?: () => RedisClient }
      try {
        redisDriver = (await import('unstorage/drivers/redis')).default as never
      } catch (error) {
        const missing = (error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && /ioredis/.test((error as Error).message)
        throw new Error(missing
          ? '[event-ingest] the redis storage needs the "ioredis" package, which is not installed: npm install ioredis'
          : `[event-ingest] the redis storage driver could not be loaded: ${(error as Error).message}`, { cause: error })
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
      })
      const client = driver.getInstance?.()
      const unreachable = client ? await watchRedis(client, options.onUnreachable) : reachable
      return { storage: createStorage({ driver: driver as never }), driver: 'redis', owned: true, unreachable }
    }
    case 'postgres':
      return openPostgres(postgresSettings(spec as PostgresStorageOptions, env), options.onUnreachable)
  }
}

const POSTGRES_OPTIONS = new Set(['driver', 'url', 'schema', 'createSchema', 'max', 'connectTimeout', 'statementTimeout'])

/** A postgres option with every default applied, checked: each bad value names its option. */
function postgresSettings(spec: PostgresStorageOptions, env: Record<string, string | undefined>): Required<Omit<PostgresStorageOptions, 'driver'>> {
  for (const name of Object.keys(spec)) {
    if (!POSTGRES_OPTIONS.has(name)) throw new TypeError(`[event-ingest] unknown postgres storage option storage.${name}; use url, schema, createSchema, max, connectTimeout or statementTimeout`)
  }
  const url = spec.url ?? env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  if (typeof url !== 'string' || !/^postgres(ql)?:\/\/./.test(url.trim())) throw new TypeError(`[event-ingest] storage.url must be a postgres:// or postgresql:// URL, got ${JSON.stringify(redactUrl(String(url)))}`)
  const schema = spec.schema ?? 'event_ingest'
  if (typeof schema !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) throw new TypeError(`[event-ingest] storage.schema must be an SQL identifier (letters, digits and _, at most 63, not starting with a digit), got ${JSON.stringify(schema)}`)
  const createSchema = spec.createSchema ?? true
  if (typeof createSchema !== 'boolean') throw new TypeError(`[event-ingest] storage.createSchema must be a boolean, got ${JSON.stringify(createSchema)}`)
  const max = spec.max ?? 10
  if (!(Number.isSafeInteger(max) && max >= 1)) throw new RangeError(`[event-ingest] storage.max must be a positive integer (connections in the pool), got ${String(max)}`)
  const settings = { url: url.trim(), schema, createSchema, max, connectTimeout: spec.connectTimeout ?? 2000, statementTimeout: spec.statementTimeout ?? 5000 }
  for (const name of ['connectTimeout', 'statementTimeout'] as const) {
    const value = settings[name]
    if (!(typeof value === 'number' && Number.isSafeInteger(value) && value > 0)) throw new RangeError(`[event-ingest] storage.${name} must be a positive integer number of ms, got ${String(value)}`)
  }
  return settings
}

/** Opens a pool (pg loaded only now), tries the schema once, and reports an unreachable database once per outage. */
async function openPostgres(settings: ReturnType<typeof postgresSettings>, onUnreachable: ((error: Error) => void) | undefined): Promise<ResolvedStorage> {
  let pg: { Pool: new (config: Record<string, unknown>) => PgPool }
  try {
    const module = (await import('pg')) as unknown as { default?: typeof pg } & typeof pg
    pg = module.default ?? module
  } catch (error) {
    const missing = (error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND'
    throw new Error(missing
      ? '[event-ingest] the postgres storage needs the "pg" package, which is not installed: npm install pg'
      : `[event-ingest] the postgres storage driver "pg" could not be loaded: ${(error as Error).message}`, { cause: error })
  }
  const pool = new pg.Pool({
    connectionString: settings.url,
    max: settings.max,
    connectionTimeoutMillis: settings.connectTimeout,
    statement_timeout: settings.statementTimeout,
    idleTimeoutMillis: 10_000,
  })
  let down = false
  const address = redactUrl(settings.url)
  const report = (error: Error) => {
    if (down) return
    down = true
    onUnreachable?.(new Error(`[event-ingest] postgres storage at ${address} is unreachable (${(error as { code?: string }).code ?? error.message}); retrying on each request`, { cause: error }))
  }
  // An idle client whose server went away emits here; without a listener the process would crash.
  pool.on('error', report)
  const driver = postgresDriver({ pool, schema: settings.schema, createSchema: settings.createSchema, ownsPool: true })
  const instance = driver.getInstance!() as PostgresDriverInstance
  try {
    await instance.ready()
  } catch (error) {
    const code = (error as { code?: string }).code
    // A schema that is missing (createSchema: false) or refused is a configuration error; a database not reachable yet is retried.
    if (/does not exist|permission denied/.test((error as Error).message) && code !== 'ECONNREFUSED') {
      await pool.end().catch(() => {})
      throw error
    }
    report(error as Error)
  }
  const watched: PgPool = pool
  const query = watched.query.bind(watched)
  watched.query = async (text, values) => {
    try {
      const result = await query(text, values)
      down = false
      return result
    } catch (error) {
      if (isConnectionError(error)) report(error as Error)
      throw error
    }
  }
  return { storage: createStorage({ driver }), driver: 'postgres', owned: true, unreachable: () => down }
}

function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string }).code ?? ''
  return /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EPIPE|57P0[1-3]|08)/.test(code) || /timeout exceeded when trying to connect|Connection terminated/.test((error as Error).message)
}

/**
 * Watches a Redis client this module created: it always has an error listener (ioredis prints
 * every failed reconnection of a client without one), each outage is told once, and the first
 * connection attempt is awaited so that `ready()` means connected, or said why not.
 */
async function watchRedis(client: RedisClient, onUnreachable: ((error: Error) => void) | undefined): Promise<() => boolean> {
  const { host = '127.0.0.1', port = 6379, path } = client.options
  const address = path || `${host.includes(':') ? `[${host}]` : host}:${port}`
  let down = false
  // Connection errors also surface as failed commands (503s), one per request.
  client.on('error', (error) => {
    if (down || client.status === 'ready') return
    down = true
    onUnreachable?.(new Error(`[event-ingest] redis storage at ${address} is unreachable (${error.code ?? error.message}); retrying in the background`, { cause: error }))
  })
  client.on('ready', () => {
    down = false
  })
  if (client.status === 'wait') client.connect().catch(() => {})
  if (client.status !== 'ready') {
    await new Promise<void>((settle) => {
      const done = () => {
        clearTimeout(timer)
        client.off('ready', done)
        client.off('error', done)
        settle()
      }
      // The error listener above has told what failed; a connection that neither opens nor fails
      // (ioredis's connectTimeout fails it) is waited for a little longer, then left to the background.
      const timer = setTimeout(done, (client.options.connectTimeout ?? 10_000) + 1000)
      client.once('ready', done)
      client.once('error', done)
    })
  }
  return () => down
}

/** Creates an fs storage directory and proves it writable, so a path that cannot be used fails at start, not on the first request. */
async function checkDirectory(base: string): Promise<void> {
  const probe = join(base, `.event-ingest-probe.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  try {
    await mkdir(base, { recursive: true })
    await writeFile(probe, '', { flag: 'wx' })
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException
    const reason = code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way of the directory' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EROFS' ? 'read-only file system' : message
    throw new Error(`[event-ingest] fs storage directory ${JSON.stringify(resolve(base))} cannot be used: ${reason} (${code ?? 'error'})`, { cause: error })
  }
  await unlink(probe).catch(() => {})
}

/** Hides a password in a URL like redis://:secret@host. */
function redactUrl(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1****@')
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
  if (/^rediss?:\/\/./.test(text)) return { driver: 'redis', url: text }
  if (/^postgres(ql)?:\/\/./.test(text)) return { driver: 'postgres', url: text }
  throw new TypeError(`[event-ingest] storage ${JSON.stringify(redactUrl(value))} is not one of memory:, fs:<dir>, redis://host:port/db, postgres://user@host:port/db`)
}
