import { createHash } from 'node:crypto'
import type { Storage } from 'unstorage'
import type { AtomicBatch, AtomicBatchStore, AtomicResult } from './atomic'
import { idKey, isNormalKey } from './layout'

/**
 * The batch write as one Lua script. KEYS: the record, the outbox entry when there is one, the
 * minute's counter of stored events when counted, then one claim per id. ARGV: where the claims
 * start in KEYS, the claim value, the window in ms, the record, the outbox entry; then, for judging
 * a claim without a record, the age past which it is free (0: never), now (ms), and the prefix of
 * record keys as the storage names them and as Redis does; then whether there is an outbox entry
 * (1 or 0) and the counter's time to live in ms (0: not counted). Redis runs a script with no other command in between, so claiming every
 * id and writing the record is one step: each claim is a `SET … NX` (one command per fresh id, the
 * common case), a claim already there is read and judged; if any is held, the script deletes the
 * claims it has just set, so it leaves nothing written, and answers the held places (0-based,
 * among the claims); else it takes over the free ones, writes the rest and answers an empty array.
 *
 * A claim is held unless it names a record that is not there and is older than the stale age: a
 * claim the claim protocol left behind (an instance of an earlier version that died between claim
 * and write, or a record pruned within its window). The claim protocol takes such claims over at
 * that same age, by which time no write of their batch can land any more.
 */
const APPEND_SCRIPT = `local first = tonumber(ARGV[1])
local stale = tonumber(ARGV[6])
local now = tonumber(ARGV[7])
local from, to = ARGV[8], ARGV[9]
local function free(value)
  if stale <= 0 then return false end
  local batch, at = string.match(value, '^(.*)|(%d+)$')
  if not batch or string.sub(batch, 1, #from) ~= from or now - tonumber(at) < stale then return false end
  return redis.call('EXISTS', to .. string.sub(batch, #from + 1)) == 0
end
local held, set, taken = {}, {}, {}
for i = first, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3], 'NX') then
    set[#set + 1] = KEYS[i]
  elseif free(redis.call('GET', KEYS[i])) then
    taken[#taken + 1] = KEYS[i]
  else
    held[#held + 1] = i - first
  end
end
if #held > 0 then
  for i = 1, #set do redis.call('DEL', set[i]) end
  return held
end
for i = 1, #taken do redis.call('SET', taken[i], ARGV[2], 'PX', ARGV[3]) end
redis.call('SET', KEYS[1], ARGV[4])
local counter = 2
if ARGV[10] == '1' then
  redis.call('SET', KEYS[2], ARGV[5])
  counter = 3
end
if tonumber(ARGV[11]) > 0 then
  -- The counter's expiry is set by the call that creates it (the script is atomic: none is ever left without one).
  local added = #KEYS - first + 1
  if redis.call('INCRBY', KEYS[counter], added) == added then redis.call('PEXPIRE', KEYS[counter], ARGV[11]) end
end
return held`

/** Options of {@link redisBatchStore}. */
export interface RedisBatchStoreOptions {
  /**
   * A held claim whose record is not there is free once this many ms old, counted from the time
   * in its value to the time in the new claim's (see {@link AtomicBatch.claim}). Unset, a held
   * claim is always held.
   * @default undefined
   */
  staleAfterMs?: number
  /**
   * Where the minute counters of stored events live (the stats prefix): with it, and when that
   * prefix is on the same Redis, the store counts the events it stores (`countsAccepted`).
   */
  countsBase?: string
}

// Named after the script's text, so a client shared by two versions of this module runs each its own.
const COMMAND = `eventIngestAppend${createHash('sha1').update(APPEND_SCRIPT).digest('hex').slice(0, 12)}`

/** The part of a single-node ioredis client this store uses. */
interface ScriptClient {
  isCluster: boolean
  defineCommand(name: string, definition: { lua: string; numberOfKeys?: number }): void
  [command: string]: unknown
}

type AppendCommand = (keyCount: number, ...args: (string | number | Buffer)[]) => Promise<unknown>

interface MountedRedis {
  name?: string
  options?: { base?: string }
  getInstance?: () => unknown
}

/** unstorage's key normalisation (`createStorage`): cut at `?`, `/` and `\` become `:`, no empty segments. */
function normalizeKey(key: string): string {
  return key.split('?')[0]?.replace(/[/\\]/g, ':').replace(/:+/g, ':').replace(/^:|:$/g, '') ?? ''
}

/** The redis driver's `joinKeys`: each part with `/`, `\` as `:` and one separator cut at each end. */
function joinDriverKeys(...parts: string[]): string {
  return parts.map((part) => part.replace(/[:/\\]/g, ':').replace(/^[:/\\]|[:/\\]$/g, '')).filter(Boolean).join(':')
}

/**
 * Where a storage key lives in Redis, as the storage and its redis driver would put it: the key is
 * normalised, made relative to its mount, and joined to the driver's `base`. With the same
 * mapping, what the script writes is what `storage.getItem`, `hasItem` and `getKeys` see.
 */
function redisKeys(storage: Storage, driver: MountedRedis): (key: string) => string {
  const base = (driver.options?.base ?? '').replace(/:$/, '')
  return (key) => {
    const normalized = normalizeKey(key)
    const mount = storage.getMount(normalized) as { base: string; driver: unknown }
    // Every key of a batch must reach the one client the script runs on.
    if (mount.driver !== driver) throw new Error(`[event-ingest] ${JSON.stringify(key)} is not on the redis storage of the event log`)
    return joinDriverKeys(base, normalized.slice(mount.base.length))
  }
}

/**
 * The one-step batch write on Redis ({@link AtomicBatchStore}): each `append` is one script call,
 * one round trip when no id is held yet, and one more for the rest when some are. Defined when
 * every key of the log under `base` (its prefix, `events`: records at `<base>:b:…`, outbox entries
 * at `<base>:o:…`, claims at `<base>:d:<idKey(id)>`) is on one unstorage `redis` driver backed by
 * a single-node ioredis client; undefined otherwise (a Cluster may hash a batch's keys to
 * different nodes, where no script can reach them all), and the caller keeps the claim protocol.
 *
 * The script runs through ioredis `defineCommand`: ioredis sends the whole script (EVAL) the first
 * time on each connection and its SHA1 (EVALSHA) after that, and sends it whole again on NOSCRIPT
 * (a script cache emptied by `SCRIPT FLUSH` or a restart), which is safe since a script that was
 * not found did not run. A plain `evalsha` would need that fallback written here, and would pay a
 * NOSCRIPT round trip on the first call after every restart of Redis; sending the script whole on
 * each new connection costs a few hundred bytes once.
 *
 * @example
 * const store = redisBatchStore(storage, 'events', { staleAfterMs: 20_000 })
 * if (store) await store.append(batch)
 */
export function redisBatchStore(storage: Storage, base: string, options: RedisBatchStoreOptions = {}): AtomicBatchStore | undefined {
  const drivers = ['b', 'o', 'd'].map((part) => (storage.getMount(`${base}:${part}`) as { driver: MountedRedis }).driver)
  const driver = drivers[0]!
  if (drivers.some((other) => other !== driver)) return undefined
  if (driver.name !== 'redis' || typeof driver.getInstance !== 'function') return undefined
  const client = driver.getInstance() as Partial<ScriptClient> | undefined
  if (!client || client.isCluster !== false || typeof client.defineCommand !== 'function') return undefined
  if (typeof client[COMMAND] !== 'function') client.defineCommand(COMMAND, { lua: APPEND_SCRIPT })
  const run = (client[COMMAND] as AppendCommand).bind(client)
  const redisKey = redisKeys(storage, driver)
  // An id's key segment (idKey: a letter and hex) is kept as is by every step of redisKey, so the
  // claims' place in Redis is mapped once and each id appended: no per-id mount lookup.
  const claimsInRedis = redisKey(`${base}:d:_`).slice(0, -1)
  const claimKey = (id: string) => claimsInRedis + idKey(id)
  // Record keys as a claim names them (`<base>:b:…`), and where Redis keeps them.
  const records = `${normalizeKey(base)}:b:`
  const recordsInRedis = redisKey(`${base}:b:_`).slice(0, -1)
  // The log's own keys below a fixed part (already normalised) map as that part does: no mount
  // lookup and no regular expressions per batch. Any other key takes the whole mapping, and so
  // does every key when another storage is mounted below the part (as for the claims above, the
  // mounts below the log's prefix are those of when the log was created).
  const below = (part: string) => {
    const from = `${normalizeKey(part)}:`
    if (storage.getMounts(from).some((mount) => mount.base.length > from.length && mount.base.startsWith(from))) return redisKey
    const to = redisKey(`${part}:_`).slice(0, -1)
    return (key: string) => (key.startsWith(from) && isNormalKey(key, from.length) ? to + key.slice(from.length) : redisKey(key))
  }
  const recordKeyOf = below(`${base}:b`)
  const outboxKeyOf = below(`${base}:o`)
  const staleAfterMs = options.staleAfterMs === undefined ? 0 : Math.max(1, Math.ceil(options.staleAfterMs))
  // Counted only when the counters are on this very Redis: the script must reach every key.
  const counting = options.countsBase !== undefined && (storage.getMount(`${options.countsBase}:a`) as { driver: MountedRedis }).driver === driver
  const counterKeyOf = counting ? below(`${options.countsBase}:a`) : redisKey

  return {
    countsAccepted: counting,
    async append(batch: AtomicBatch): Promise<AtomicResult> {
      const recordKey = recordKeyOf(batch.batchKey)
      const outboxKey = batch.outbox && outboxKeyOf(batch.outbox.key)
      const counts = counting ? batch.counts : undefined
      const counterKey = counts && counterKeyOf(counts.key)
      const counterTtl = counts ? Math.max(1, Math.ceil(counts.ttlMs)) : 0
      const claims = batch.ids.map(claimKey)
      // The claim names its time: the age of a claim found held is counted to it.
      const now = Number(batch.claim.slice(batch.claim.lastIndexOf('|') + 1)) || 0
      const duplicates: number[] = []
      // Positions (into `ids`) this call tries; all of them first.
      let positions: number[] | undefined
      for (;;) {
        const tried = positions ?? batch.ids.map((_, p) => p)
        if (tried.length === 0) break
        const record = batch.record(positions)
        const keys = [recordKey, ...(outboxKey ? [outboxKey] : []), ...(counterKey ? [counterKey] : []), ...tried.map((p) => claims[p]!)]
        const first = keys.length - tried.length + 1
        const entry = batch.outbox ? batch.outbox.entry(tried.length) : ''
        const answer = await run(keys.length, ...keys, first, batch.claim, Math.max(1, Math.ceil(batch.windowMs)), toArgument(record), entry, staleAfterMs, now, records, recordsInRedis, outboxKey ? 1 : 0, counterTtl)
        const held = heldPlaces(answer)
        if (held.length === 0) break
        const heldSet = new Set(held)
        for (const place of held) duplicates.push(tried[place]!)
        positions = tried.filter((_, place) => !heldSet.has(place))
      }
      return { duplicates: duplicates.sort((a, b) => a - b) }
    },
  }
}

/** A record as the script writes it: text as is, bytes as the text they encode (what `getItem` reads back). */
function toArgument(record: string | Uint8Array): string | Buffer {
  return typeof record === 'string' ? record : Buffer.from(record.buffer, record.byteOffset, record.byteLength)
}

function heldPlaces(answer: unknown): number[] {
  if (!Array.isArray(answer)) throw new Error(`[event-ingest] redis batch script answered ${JSON.stringify(answer)}`)
  return answer.map(Number)
}
