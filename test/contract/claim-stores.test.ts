import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createStorage, defineDriver, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import redisDriver from 'unstorage/drivers/redis'
import pg from 'pg'
import { fsDriver } from '../../src/storage/fs-driver'
import { postgresDriver } from '../../src/storage/postgres-driver'
import { databaseUrl, dropSchemas, requirePostgres, uniqueSchema } from '../helpers/postgres'
import { claimStoreSuite } from './claim-store/suite'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'

// The claim store suite over every backend the claim protocol runs on.

const opened: Storage[] = []
const track = (storage: Storage) => {
  opened.push(storage)
  return storage
}
const disposeAll = async () => {
  await Promise.all(opened.splice(0).map((storage) => storage.dispose().catch(() => {})))
}

claimStoreSuite({
  name: 'memory',
  atomic: true,
  expiresByTtl: false,
  fresh: async () => createStorage({ driver: memoryDriver() }),
  // One process is all there is: another view of it is the same storage.
  again: async (storage) => storage,
  cleanup: async () => {},
})

// A driver of no known kind: its claims are a read, then a write.
const generic = defineDriver(() => ({ ...memoryDriver(), name: 'generic-kv' }))
claimStoreSuite({
  name: 'a generic unstorage driver',
  atomic: false,
  expiresByTtl: false,
  fresh: async () => createStorage({ driver: generic() }),
  again: async (storage) => storage,
  cleanup: async () => {},
})

const dirs: string[] = []
const dirOf = new WeakMap<Storage, string>()
claimStoreSuite({
  name: "event-ingest's fs driver",
  atomic: true,
  expiresByTtl: false,
  async fresh() {
    const dir = await mkdtemp(join(tmpdir(), 'event-ingest-claims-'))
    dirs.push(dir)
    const storage = track(createStorage({ driver: fsDriver({ base: dir }) }))
    dirOf.set(storage, dir)
    return storage
  },
  async again(storage) {
    const again = track(createStorage({ driver: fsDriver({ base: dirOf.get(storage)! }) }))
    dirOf.set(again, dirOf.get(storage)!)
    return again
  },
  async cleanup() {
    await disposeAll()
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
  },
})

const prefix = uniquePrefix('claims')
let place = 0
const baseOf = new WeakMap<Storage, string>()
claimStoreSuite({
  name: 'Redis',
  atomic: true,
  expiresByTtl: true,
  async fresh() {
    await requireRedis()
    const base = `${prefix}:${++place}`
    const storage = track(createStorage({ driver: redisDriver({ url: redisUrl, base }) }))
    baseOf.set(storage, base)
    return storage
  },
  async again(storage) {
    // Its own client: another process's connection.
    const again = track(createStorage({ driver: redisDriver({ url: redisUrl, base: baseOf.get(storage)! }) }))
    baseOf.set(again, baseOf.get(storage)!)
    return again
  },
  async cleanup() {
    await disposeAll()
    await deletePrefix(prefix)
  },
})

// PostgreSQL keeps its claims in its batch transaction (the events table's primary key); the claim
// store over its key-value table serves reads (`get(id)`) and `prune`'s expiry, with the generic
// read-then-write semantics.
const pgPrefix = uniqueSchema('claims')
let pgPlace = 0
const schemaOf = new WeakMap<Storage, string>()
const pgStorage = (schema: string) => track(createStorage({ driver: postgresDriver({ pool: new pg.Pool({ connectionString: databaseUrl, max: 2 }) as never, schema, createSchema: true, ownsPool: true }) }))
claimStoreSuite({
  name: 'PostgreSQL',
  atomic: false,
  expiresByTtl: false,
  async fresh() {
    await requirePostgres()
    const schema = `${pgPrefix}_${++pgPlace}`
    const storage = pgStorage(schema)
    schemaOf.set(storage, schema)
    return storage
  },
  async again(storage) {
    // Its own pool: another process's connections.
    const again = pgStorage(schemaOf.get(storage)!)
    schemaOf.set(again, schemaOf.get(storage)!)
    return again
  },
  async cleanup() {
    await disposeAll()
    await dropSchemas(pgPrefix)
  },
})
