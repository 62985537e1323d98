import { randomBytes } from 'node:crypto'
import type { Storage } from 'unstorage'
import { createIdClaims, type IdClaims } from '../storage/claims'
import { eachLimited, nextTurn } from '../core/each'
import { IngestError } from '../core/errors'
import { hourBucket } from '../storage/layout'
import { withTimeout } from '../core/timeout'
import type { EventEnvelope } from '../model/model'
import type { ReceivedBody } from '../model/received'

/** An event as stored: the normalised envelope plus when it was received. */
export type StoredEvent<E extends EventEnvelope = EventEnvelope> = E & {
  /** When the batch carrying it was accepted (ISO, UTC). */
  receivedAt: string
}

/** Options of {@link createEventLog}. */
export interface EventLogOptions {
  /** Where batches and dedupe claims live. */
  storage: Storage
  /**
   * Key prefix inside the storage.
   * @default 'events'
   */
  prefix?: string
  /**
   * How long an id is remembered for deduplication, in ms. Keep retention at least this long.
   * @default 86_400_000 (24 h)
   */
  dedupeWindowMs?: number
  /**
   * Longest a storage operation may take before the request fails with 503, in ms (a batch write
   * that times out is waited for once more; see `append`).
   * @default 5000
   */
  timeoutMs?: number
  /** This process's id; part of every batch key, so instances never write the same key. */
  instanceId: string
  /** @default Date.now */
  now?: () => number
  /**
   * Write an outbox entry with every batch, in the same acknowledged step, for the forwarder.
   * @default false
   */
  outbox?: boolean
  /**
   * Told of a batch whose writes landed whole only after its request had answered 503: it is
   * stored (a retry is told its events are duplicates), so it is counted and forwarded too.
   * `events` are those appended; `result.duplicateIndexes` says which of them were not stored.
   */
  onLateWrite?: (result: AppendResult & { batchKey: string }, events: readonly EventEnvelope[], receivedAt: number) => void
  /**
   * Told of the outbox entry of a batch found not stored after its request answered 503. The entry
   * stays (the record may still land, on a driver whose writes can outlive their failure), for the
   * forwarder to drop once 4 storage timeouts have passed, or to forward if the record is there.
   */
  onUnstored?: (outboxKey: string, entry: OutboxEntry) => void
  /** Told of failures of that background work (see `close`), and once when `maxEvents` is first reached. */
  onError?: (error: unknown) => void
  /**
   * On a memory storage: most events kept from the batches this log stored. Past it, the oldest
   * batches are dropped, with their outbox entries and their ids' dedupe claims (sent again, those
   * ids are stored again), and counted in `dropped`. Ignored on other storages.
   * @default Infinity
   */
  maxEvents?: number
  /**
   * On a memory storage: most bytes of stored batches kept, dropped as for `maxEvents`.
   * @default Infinity
   */
  maxBytes?: number
}

/** What the outbox holds for one stored batch: delivery state lives with the forwarder. */
export interface OutboxEntry {
  /** Storage key of the batch record to forward. */
  batch: string
  /** Events in the batch. */
  events: number
  /** When the batch was accepted (ms). */
  receivedAt: number
}

/** The outcome of appending a batch. */
export interface AppendResult {
  /** Events written now. */
  stored: number
  /** Positions (in the appended array) of events whose id was already stored or was repeated in the batch. */
  duplicateIndexes: number[]
  /** Storage key of the batch record, when one was written. */
  batchKey?: string
  /** Storage key of the outbox entry, when the log keeps an outbox. */
  outboxKey?: string
}

/** A query over stored events; newest first. */
export interface EventQuery {
  name?: string
  source?: string
  /** Received at or after (ms since epoch or a Date). @default 7 days before `until` */
  since?: number | Date
  /** Received before (ms or Date). @default now */
  until?: number | Date
  /** Page size. @default 100 (at most 1000) */
  limit?: number
  /** `nextCursor` of the previous page. */
  cursor?: string
}

/** One page of stored events. */
export interface EventPage<E extends EventEnvelope = EventEnvelope> {
  events: StoredEvent<E>[]
  /** Pass as `cursor` for the next page; null when there is none. */
  nextCursor: string | null
}

/**
 * The event log on unstorage: append-only batch records partitioned by hour, plus one dedupe claim
 * per id. An append is durable (written) before it resolves, and the same id is stored once within
 * the dedupe window, across restarts and across instances sharing storage.
 */
export interface EventLog {
  /**
   * Stores a batch. `raw`, when given, is the JSON text of exactly `events` as received, kept as is
   * if all of them are stored.
   */
  append(events: readonly EventEnvelope[], receivedAt: number, raw?: RawBatch): Promise<AppendResult>
  list(query?: EventQuery): Promise<EventPage>
  /** Reads one stored event by id (within the dedupe window). */
  get(id: string): Promise<StoredEvent | null>
  /**
   * Deletes batches received before `olderThan` (keeping those still waiting to be forwarded),
   * touching only the hour buckets it needs, and dedupe claims past the window.
   */
  prune(options: PruneOptions): Promise<{ batches: number; claims: number }>
  /** Batch records found unreadable (a torn write); they are skipped, never served. */
  readonly corruptRecords: number
  /** Whether claims are atomic on this driver (true for memory, fs and Redis). */
  readonly atomicDedupe: boolean
  /** Batches and events a memory storage dropped to stay within `maxEvents` and `maxBytes` (zeros elsewhere). */
  readonly dropped: { batches: number; events: number }
  /** What a bounded memory storage holds now: batches, events and bytes of batches (zeros elsewhere). */
  readonly kept: { batches: number; events: number; bytes: number }
  /**
   * Stops the background work on batches whose requests answered 503 with their writes sent
   * (finding out whether the record landed, writing its outbox entry): each makes one last attempt
   * now, waited for at most twice the storage timeout. An outbox entry left unwritten then is the
   * only way such a batch misses forwarding.
   */
  close(): Promise<void>
}

/** Options of {@link EventLog.prune}. */
export interface PruneOptions {
  /** Batches received before this time (ms since epoch, or a Date) are deleted. */
  olderThan: number | Date
  /** Stops the prune between two storage calls; it then resolves with what it deleted so far. */
  signal?: AbortSignal
}

/** A batch's JSON text as received: the array of its events. */
export type RawBatch = Pick<ReceivedBody, 'text'> & Partial<Pick<ReceivedBody, 'bytes' | 'owned'>>

export interface BatchRecord {
  v: 1
  receivedAt: number
  instance: string
  events: EventEnvelope[]
}

const HOUR = 3_600_000

/**
 * A claim is stale, and taken over when its batch is not stored, once it is this many storage
 * timeouts old: its batch's writes were sent within one timeout of claiming and are waited for two
 * more (the write, then its outcome); one more is a margin for a late event loop, writes queued in
 * a client, and clocks that differ between instances. A request may answer 200 later still, but
 * only for a record it has read back, which no take-over can follow (it needs the record absent).
 */
const STALE_AFTER_TIMEOUTS = 4


/**
 * A batch being written by this process. `seq` orders batches by age; `changed`, made only when
 * another batch waits on this one, settles when this one is `done` (stored or failed) or lets go of
 * its claims before that (see `append`).
 */
interface Flight {
  seq: number
  /** The count of releases (in its log) when it last let go of its claims; 0 when it never did. */
  releasedAt: number
  done: boolean
  changed?: { promise: Promise<void>; resolve: () => void }
}

/** Wakes the batches waiting on `flight`. */
function wake(flight: Flight): void {
  const changed = flight.changed
  flight.changed = undefined
  changed?.resolve()
}

/** Settles when `other` is stored, fails, or lets go of its claims; or after `ms`. */
function whenSettled(other: Flight, ms: number): Promise<unknown> {
  // Done while the waiter was busy with something else: nothing left to wait for.
  if (other.done) return Promise.resolve()
  if (!other.changed) {
    let resolve!: () => void
    const promise = new Promise<void>((r) => (resolve = r))
    other.changed = { promise, resolve }
  }
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))
  return Promise.race([other.changed.promise, timeout]).finally(() => clearTimeout(timer))
}

/** 503 `in_progress` for a batch whose ids other requests are storing. */
function batchBusy(): IngestError {
  return new IngestError('in_progress', 'events of this batch are being stored by other requests; retry shortly')
}

/** 503 `in_progress` for one id another request is storing. */
function idBusy(id: string): IngestError {
  return new IngestError('in_progress', `event ${id} is being stored by another request; retry shortly`, { id })
}

/** A dedupe claim's value: `<batch key>|<claimed at, ms>`. */
function parseClaim(value: string): { batch: string; at: number } {
  const split = value.lastIndexOf('|')
  if (split < 0) return { batch: value, at: 0 }
  const at = Number(value.slice(split + 1))
  return { batch: value.slice(0, split), at: Number.isFinite(at) ? at : 0 }
}


function toMs(value: number | Date | undefined, fallback: number): number {
  if (value === undefined) return fallback
  return typeof value === 'number' ? value : value.getTime()
}

const utf8 = new TextDecoder()

/**
 * The receive time and instance a batch key names: `…:<time, base 36>-<instance>-<sequence>` (the
 * sequence of a log's batches, after a token of that log).
 * Null when the key is not a batch key.
 */
function keyHead(key: string): { receivedAt: number; instance: string } | null {
  const id = key.slice(key.lastIndexOf(':') + 1)
  const first = id.indexOf('-')
  const last = id.lastIndexOf('-')
  if (first <= 0 || last <= first + 1) return null
  const receivedAt = Number.parseInt(id.slice(0, first), 36)
  return Number.isSafeInteger(receivedAt) ? { receivedAt, instance: id.slice(first + 1, last) } : null
}

/**
 * A batch record read back from `key`, or null when it is missing or unreadable (a torn write).
 * A record is JSON text (`{"v":1,"receivedAt":…,"instance":…,"events":[…]}`), or, as the memory
 * driver keeps it, the events array exactly as received (bytes, or text once copied elsewhere),
 * whose time and instance the key names.
 */
export function parseRecord(raw: unknown, key: string): BatchRecord | null {
  let value: unknown = raw instanceof Uint8Array ? utf8.decode(raw) : raw
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      return null
    }
  }
  if (Array.isArray(value)) {
    const head = keyHead(key)
    return head ? { v: 1, ...head, events: value as EventEnvelope[] } : null
  }
  if (typeof value !== 'object' || value === null) return null
  const record = value as BatchRecord
  if (record.v !== 1 || typeof record.receivedAt !== 'number' || !Array.isArray(record.events)) return null
  return record
}

/** Creates the event log. */
export function createEventLog(options: EventLogOptions): EventLog {
  const { storage, instanceId } = options
  const prefix = options.prefix ?? 'events'
  const windowMs = options.dedupeWindowMs ?? 86_400_000
  const timeoutMs = options.timeoutMs ?? 5000
  const now = options.now ?? Date.now
  const claims: IdClaims = createIdClaims(storage, `${prefix}:d`)
  const batchBase = `${prefix}:b`
  const onMemory = (key: string) => (storage.getMount(key) as { driver: { name?: string } }).driver.name === 'memory'
  const keepsBytes = onMemory(batchBase)
  // The batches this log stored in memory, oldest first, with their event counts and claim values,
  // while bounded (the claims go with the batch: the claim table is bounded by the same cap).
  const bounded = keepsBytes && claims.forget !== undefined
  const maxEvents = bounded ? (options.maxEvents ?? Infinity) : Infinity
  const maxBytes = bounded ? (options.maxBytes ?? Infinity) : Infinity
  const inMemory = new Map<string, { events: number; bytes: number; claim: string }>()
  let keptEvents = 0
  let keptBytes = 0
  const dropped = { batches: 0, events: 0 }
  // Every batch write goes to the memory driver: a write is done when it returns, nothing to time.
  const localWrites = keepsBytes && (!options.outbox || onMemory(`${prefix}:o`))
  // Batches this process is writing right now, by key: a request that finds one of them holding
  // its ids waits for that batch's outcome (stored, or failed and released) instead of guessing.
  const flights = new Map<string, Flight>()
  // Counts the times a flight let go of its claims before its outcome (see Flight.releasedAt).
  let releases = 0
  // On a store whose claims are a read then a write (not atomic), two batches of this process must
  // not claim one id at the same time: there, the ids being claimed, by the flight claiming them.
  const claiming = claims.atomic ? undefined : new Map<string, Flight>()
  // Ids a flight of this process is taking over from a stale claim: two must not both take one.
  const takingOver = new Map<string, Flight>()
  // Batches of this process with work on their claims or writes still running (a release that ran
  // past its timeout, settling a late write), by how many such jobs: their claims are not final yet.
  const settling = new Map<string, number>()
  // Part of the sequence in every batch key of this log: a key with it was made here, not by an
  // earlier process with the same instance id, whatever the clocks did meanwhile.
  const logToken = randomBytes(3).toString('hex')
  let sequence = 0
  let corrupt = 0
  const hoursKey = `${prefix}:hours`
  let indexedHour = ''

  async function readHours(): Promise<string[]> {
    const value = await withTimeout(storage.getItem<string[]>(hoursKey), timeoutMs, 'read')
    return Array.isArray(value) ? value.map(String) : []
  }

  // The hour buckets that hold batches, so listing and pruning visit only those. Updates run one at
  // a time in this process; a concurrent update from another instance can still drop an entry, so
  // an instance re-checks its hours at most once a minute, and the hour it leaves when it moves on.
  let hoursTurn: Promise<unknown> = Promise.resolve()
  let indexedAt = 0
  function updateHours<T>(fn: () => Promise<T>): Promise<T> {
    const run = hoursTurn.then(fn, fn)
    hoursTurn = run.catch(() => {})
    return run
  }

  // The hour being indexed right now: appends that need the same hour share its update, so a slow
  // or failing hours write costs them one storage timeout together, not one each in turn.
  let indexing: { hour: string; done: Promise<void> } | undefined

  function indexHour(hour: string): Promise<void> {
    if (hour === indexedHour && now() - indexedAt < 60_000) return Promise.resolve()
    if (indexing?.hour === hour) return indexing.done
    const done = updateHours(async () => {
      if (hour === indexedHour && now() - indexedAt < 60_000) return
      const hours = await readHours()
      const wanted = indexedHour && indexedHour !== hour ? [indexedHour, hour] : [hour]
      const missing = wanted.filter((h) => !hours.includes(h))
      if (missing.length > 0) await withTimeout(storage.setItem(hoursKey, [...hours, ...missing].sort()), timeoutMs, 'write')
      indexedHour = hour
      indexedAt = now()
    })
    const current = { hour, done }
    indexing = current
    const clear = () => {
      if (indexing === current) indexing = undefined
    }
    done.then(clear, clear)
    return done
  }

  /** The outbox entry of a batch: `o:<instance>:<batch id>`, the id being `<time>-<instance>-<seq>`. */
  const outboxKeyOf = (batchKey: string): string => {
    const batchId = batchKey.slice(batchKey.lastIndexOf(':') + 1)
    return `${prefix}:o:${batchId.split('-')[1]}:${batchId}`
  }

  const batchTime = (batchKey: string): number => {
    const last = batchKey.slice(batchKey.lastIndexOf(':') + 1)
    const ms = Number.parseInt(last.slice(0, last.indexOf('-')), 36)
    return Number.isFinite(ms) ? ms : 0
  }

  /**
   * Whether a claim was taken by a batch of this log that is done with it: not in flight, with
   * no work on it left in the background. Its outcome is final, stored or let go, so when its
   * record is not there, the record was deleted since (a prune, a cleared storage), and nothing
   * can land it later: the id is taken over at once instead of once the claim is stale.
   */
  function settledHere(claim: { batch: string; at: number }): boolean {
    const sequence = claim.batch.slice(claim.batch.lastIndexOf('-') + 1)
    const mine = sequence.length === logToken.length + 6 && sequence.startsWith(logToken) && keyHead(claim.batch)?.instance === instanceId
    return mine && !flights.has(claim.batch) && !settling.has(claim.batch)
  }

  /** Marks background work on a batch until `work` settles (see `settledHere`). */
  function track<T>(batchKey: string, work: Promise<T>): Promise<T> {
    settling.set(batchKey, (settling.get(batchKey) ?? 0) + 1)
    const done = () => {
      const left = settling.get(batchKey)! - 1
      if (left === 0) settling.delete(batchKey)
      else settling.set(batchKey, left)
    }
    work.then(done, done)
    return work
  }

  /** Lets go of `ids` where they still hold `claim`, bounded by the storage timeout (the release itself may run on). */
  function releaseClaims(ids: readonly string[], claim: string, batchKey: string): Promise<void> {
    return withTimeout(track(batchKey, claims.release(ids, claim)), timeoutMs, 'release')
  }

  /** Claims ids, bounded by the storage timeout (claims kept in this process answer at once). */
  function claimIds(ids: readonly string[], claim: string): Promise<(string | null)[]> {
    const claimed = claims.claim(ids, claim, windowMs)
    return claims.local ? claimed : withTimeout(claimed, timeoutMs, 'claim')
  }

  async function readRecord(key: string): Promise<BatchRecord | null> {
    const raw = await withTimeout(storage.getItem(key), timeoutMs, 'read')
    if (raw === null || raw === undefined) return null
    const record = parseRecord(raw, key)
    if (!record) corrupt++
    return record
  }

  async function append(events: readonly EventEnvelope[], receivedAt: number, raw?: RawBatch): Promise<AppendResult> {
    const duplicateIndexes: number[] = []
    if (events.length === 0) return { stored: 0, duplicateIndexes }
    const ids = new Array<string>(events.length)
    for (let i = 0; i < events.length; i++) ids[i] = events[i]!.id
    // Fixed-width time first, so keys sort in acceptance order within an instance.
    const batchId = `${receivedAt.toString(36).padStart(9, '0')}-${instanceId}-${logToken}${(sequence++).toString(36).padStart(6, '0')}`
    const batchKey = `${batchBase}:${hourBucket(receivedAt)}:${batchId}`
    const outboxKey = options.outbox ? outboxKeyOf(batchKey) : undefined
    const flight: Flight = { seq: sequence, releasedAt: 0, done: false }
    flights.set(batchKey, flight)
    // Ids this append holds a claim on.
    const mine: string[] = []
    // A claim names its batch and when it was taken: its age, not the batch's receivedAt, decides
    // whether it is still in progress, stale or expired.
    const claimedAt = now()
    const claim = `${batchKey}|${claimedAt}`
    // The batch writes, once sent.
    let writes: Promise<void>[] | undefined
    // The answer once the writes are sent.
    let result: AppendResult | undefined
    let outboxEntry: OutboxEntry | undefined
    // Whether this append waited for others of this process (running out of time is then theirs).
    let waited = false
    // Ids this append registered in `takingOver`.
    let tookOver: string[] | undefined
    // A claim call failed: it may have claimed some of its ids before it did.
    let claimsUnknown = false
    const claimsFailed = (error: unknown): never => {
      claimsUnknown = true
      throw error
    }
    try {
      if (claiming) {
        // Wait until no other append of this process claims any of these ids, then take them all
        // at once (waiting while holding some could deadlock two batches that share ids).
        for (;;) {
          let busy: Flight | undefined
          for (const id of ids) {
            busy = claiming.get(id)
            if (busy) break
          }
          if (!busy) break
          const left = timeoutMs - (now() - claimedAt)
          if (left <= 0) throw batchBusy()
          waited = true
          await whenSettled(busy, left)
        }
        for (const id of ids) claiming.set(id, flight)
      }
      // Positions (in the batch) claimed by the last call, when not all of them, and what it found.
      let asked: number[] | undefined
      // Releases counted before the last call: a holder that let go after it is not waited on.
      let releasesSeen = 0
      const claimAt = (positions: number[] | undefined) => {
        asked = positions
        releasesSeen = releases
        return claimIds(positions ? positions.map((p) => ids[p]!) : ids, claim).catch(claimsFailed)
      }
      let claimedAgain = false
      let existing = await claimAt(undefined)
      // Positions of ids another batch holds, and the claims found on them.
      let conflicts: number[] | undefined
      let held: string[] | undefined
      for (;;) {
        conflicts = held = undefined
        for (let i = 0; i < existing.length; i++) {
          const value = existing[i]
          const position = asked ? asked[i]! : i
          if (value === null || value === undefined) mine.push(ids[position]!)
          // An id this very call claimed at an earlier position: repeated within the batch.
          else if (value === claim) duplicateIndexes.push(position)
          else {
            ;(conflicts ??= []).push(position)
            ;(held ??= []).push(value)
          }
        }
        if (!conflicts) break
        // Batches of this process still being written hold some: their outcome settles them.
        // Waits follow wait-die, so two batches never wait for each other (their claims can
        // interleave on some stores): a batch waits for younger holders, but before waiting for an
        // older one it lets go of every claim it holds and then starts over.
        let younger: Flight | undefined
        let older: Flight | undefined
        // A holder of this process that is no longer in flight finished after the answer was read.
        let finished = false
        for (const value of held!) {
          const batch = parseClaim(value).batch
          const holder = flights.get(batch)
          if (!holder) {
            finished ||= keyHead(batch)?.instance === instanceId
            continue
          }
          if (holder.seq < flight.seq) {
            older = holder
            break
          }
          younger ??= holder
        }
        if (!older && !younger) {
          // Stored, or failed and let go of its claims: claiming again tells which (once).
          if (!finished || claimedAgain) break
          claimedAgain = true
          existing = await claimAt(conflicts)
          continue
        }
        const left = timeoutMs - (now() - claimedAt)
        if (left <= 0) throw batchBusy()
        waited = true
        if (older) {
          if (mine.length > 0) {
            await releaseClaims(mine, claim, batchKey)
            mine.length = 0
            flight.releasedAt = ++releases
            wake(flight)
          }
          duplicateIndexes.length = 0
          // A holder that let go of its claims since they were read is not waited on (its wake-up
          // has passed): claim again.
          if (older.releasedAt <= releasesSeen) await whenSettled(older, timeoutMs - (now() - claimedAt))
          existing = await claimAt(undefined)
        } else {
          if (younger!.releasedAt <= releasesSeen) await whenSettled(younger!, left)
          existing = await claimAt(conflicts)
        }
      }
      if (conflicts) {
        const takeover: string[] = []
        // The stale claims judged, parallel to `takeover`.
        const stale: string[] = []
        // Ids taken over here: a repeat of one within the batch is a duplicate of it.
        const taken = new Set<string>()
        const seen = new Map<string, Promise<boolean>>()
        const exists = (key: string) => {
          let check = seen.get(key)
          if (!check) seen.set(key, (check = readRecord(key).then((record) => record !== null)))
          return check
        }
        await Promise.all(conflicts.map(async (position, i) => {
          const other = parseClaim(held![i]!)
          const age = now() - other.at
          // Judged before the record is read: a batch still settling may land its record while the
          // read is under way and be settled by the time it answers "absent".
          const final = settledHere(other)
          if (other.batch && age < windowMs && (await exists(other.batch))) {
            duplicateIndexes.push(position)
          } else if (other.batch && age < windowMs && age < timeoutMs * STALE_AFTER_TIMEOUTS && !final) {
            throw idBusy(ids[position]!)
          } else if (taken.has(ids[position]!)) {
            duplicateIndexes.push(position)
          } else {
            // Expired, or left by a write that failed (its owner gives up within timeoutMs of
            // claiming, see below): this batch takes the id over.
            taken.add(ids[position]!)
            takeover.push(ids[position]!)
            stale.push(held![i]!)
          }
        }))
        if (takeover.length > 0) {
          // Batches gone from the storage (pruned, or the storage cleared or restarted empty): the
          // hour index may have gone with them, so this batch checks it again.
          indexedHour = ''
          // One flight of this process at a time takes an id over, and only while the claim still
          // holds what was judged stale: another request, here or in another instance, may have
          // taken it over and stored it meanwhile. The replace is a compare-and-set where the
          // storage gives one (see ClaimStore), so of instances taking one claim over at once,
          // one wins; the others answer in_progress, and their retries find the winner's record.
          const busy = takeover.find((id) => takingOver.has(id))
          if (busy !== undefined) throw idBusy(busy)
          for (const id of takeover) takingOver.set(id, flight)
          tookOver = takeover
          const won = await withTimeout(claims.replace(takeover, stale, claim, windowMs), timeoutMs, 'claim').catch(claimsFailed)
          for (let i = 0; i < takeover.length; i++) if (won[i]) mine.push(takeover[i]!)
          const lost = won.indexOf(false)
          if (lost >= 0) throw idBusy(takeover[lost]!)
        }
      }
      duplicateIndexes.sort((a, b) => a - b)
      const storedPositions = duplicateIndexes.length === 0 ? undefined : events.map((_, p) => p).filter((p) => !duplicateIndexes.includes(p))
      if (storedPositions && storedPositions.length === 0) return { stored: 0, duplicateIndexes }
      const storedCount = storedPositions ? storedPositions.length : events.length
      const hour = hourBucket(receivedAt)
      if (hour !== indexedHour || now() - indexedAt >= 60_000) await indexHour(hour)
      // Another request may take these claims over once they are stale (STALE_AFTER_TIMEOUTS):
      // writing after timeoutMs could then put a second copy next to its own.
      if (now() - claimedAt > timeoutMs) {
        if (waited) throw batchBusy()
        throw new IngestError('storage_unavailable', `storage is too slow: claiming took over ${timeoutMs} ms`)
      }
      // The text as received is the record's events when all of them are stored unchanged: no
      // second serialisation on the hot path.
      const asSent = raw !== undefined && storedPositions === undefined
      let write: Promise<void>
      // What the record holds, for the memory bound: its bytes, or its text's length.
      let size: number
      if (asSent && raw.bytes && keepsBytes && Number.isSafeInteger(receivedAt) && receivedAt >= 0) {
        // The memory driver keeps the body's own bytes: off the JS heap, so stored events do not
        // add to the garbage collector's work, and with no copy when nothing else holds them. The
        // key names the receive time and instance (see parseRecord).
        const bytes = raw.bytes
        const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
        write = storage.setItemRaw(batchKey, raw.owned && whole ? bytes : Buffer.from(bytes))
        size = bytes.byteLength
      } else {
        const text = asSent
          ? `{"v":1,"receivedAt":${receivedAt},"instance":${JSON.stringify(instanceId)},"events":${raw.text}}`
          : JSON.stringify({ v: 1, receivedAt, instance: instanceId, events: storedPositions ? storedPositions.map((p) => events[p]!) : events as EventEnvelope[] } satisfies BatchRecord)
        write = storage.setItem(batchKey, text)
        size = text.length
      }
      writes = [write]
      if (outboxKey) {
        outboxEntry = { batch: batchKey, events: storedCount, receivedAt }
        writes.push(storage.setItem(outboxKey, JSON.stringify(outboxEntry)))
      }
      result = { stored: storedCount, duplicateIndexes, batchKey, outboxKey }
      // Writes to the memory driver are done when they return: no timer to race them against.
      const all: Promise<unknown> = writes.length === 1 ? write : Promise.all(writes)
      await (localWrites ? all : withTimeout(all, timeoutMs, 'write'))
      if (maxEvents !== Infinity || maxBytes !== Infinity) keep(batchKey, storedCount, size, claim)
      return result
    } catch (error) {
      if (mine.length > 0 || claimsUnknown) {
        if (claimsUnknown) {
          // A claim call failed part way: every id this batch may hold goes (a release removes
          // only claims that still name this batch), in the background, since the storage that
          // just failed may still be failing and the request answers now. On Redis it runs after
          // the claim's own commands, so it also clears claims that land late.
          void releaseClaims(ids, claim, batchKey).catch(() => {})
        } else if (!writes) {
          // Nothing was sent: the claims go.
          await releaseClaims(mine, claim, batchKey).catch(() => {})
        } else {
          // Once sent, the writes are waited for, and a record that landed is never removed:
          // another request that read it meanwhile answered "duplicate", and a removal after that
          // would lose an acknowledged event.
          const written = Promise.allSettled(writes)
          const outcome = await withTimeout(written, timeoutMs, 'write').catch(() => undefined)
          const there = outcome && await recordLanded(outcome, batchKey)
          // Written, only late: stored, and acknowledged as such.
          if (there && await outboxWritten(outcome, outboxKey, outboxEntry)) return result!
          if (there === false) {
            // Not stored: the claims go. A record landing after this makes at worst a second copy,
            // never a loss. The outbox entry stays: the forwarder drops an entry with no record
            // behind it, and forwards one whose record lands after all.
            await releaseClaims(mine, claim, batchKey).catch(() => {})
            if (outboxKey) options.onUnstored?.(outboxKey, outboxEntry!)
          } else {
            // Stored without its outbox entry, still unsettled, or not readable back: the claims
            // stay (a retry is told duplicates once the record is there) and the rest is settled in
            // the background.
            settleLate({ ...result!, batchKey }, events, receivedAt, written, there, outboxKey, outboxEntry)
          }
        }
      }
      if (error instanceof IngestError) throw error
      // The storage may have lost data meanwhile (a Redis restarted empty): check the hour index again.
      indexedHour = ''
      throw new IngestError('storage_unavailable', `storage is unavailable: ${(error as Error).message}`, undefined, { cause: error })
    } finally {
      flights.delete(batchKey)
      if (claiming) for (const id of ids) if (claiming.get(id) === flight) claiming.delete(id)
      if (tookOver) for (const id of tookOver) if (takingOver.get(id) === flight) takingOver.delete(id)
      flight.done = true
      wake(flight)
    }
  }

  /**
   * Counts a batch stored in memory, then drops the oldest batches (never this one) until at most
   * `maxEvents` events and `maxBytes` bytes are kept, with their claims: a claim naming a batch
   * that is gone would be taken over anyway (see `settledHere`), so keeping it would keep memory,
   * not deduplication.
   */
  function keep(batchKey: string, events: number, bytes: number, claim: string): void {
    inMemory.set(batchKey, { events, bytes, claim })
    keptEvents += events
    keptBytes += bytes
    while ((keptEvents > maxEvents || keptBytes > maxBytes) && inMemory.size > 1) {
      const [oldest, { events: count, bytes: size, claim: held }] = inMemory.entries().next().value as [string, { events: number; bytes: number; claim: string }]
      inMemory.delete(oldest)
      keptEvents -= count
      keptBytes -= size
      claims.forget!(held)
      if (dropped.batches === 0) {
        const bound = keptEvents + count > maxEvents ? `${maxEvents} events (maxEvents)` : `${maxBytes} bytes of batches (maxBytes)`
        options.onError?.(new Error(`the memory storage holds ${bound}: the oldest batches are dropped from now on, and counted; use fs or Redis storage to keep more`))
      }
      dropped.batches++
      dropped.events += count
      const removals = [storage.removeItem(oldest)]
      if (options.outbox) removals.push(storage.removeItem(outboxKeyOf(oldest)))
      void Promise.all(removals).catch((error: unknown) => options.onError?.(error))
    }
  }

  /**
   * Whether the record of a batch whose writes settled as `outcome` is stored. A write that failed
   * may still have landed (a client-side timeout, an fsync failing after the rename): it is read
   * back. Undefined when that read fails.
   */
  async function recordLanded(outcome: PromiseSettledResult<void>[], batchKey: string): Promise<boolean | undefined> {
    if (outcome[0]!.status === 'fulfilled') return true
    return readRecord(batchKey).then((record) => record !== null, () => undefined)
  }

  /** Writes an outbox entry (again), bounded by the storage timeout; resolves the error, if any. */
  function writeOutbox(outboxKey: string, entry: OutboxEntry): Promise<unknown> {
    return withTimeout(storage.setItem(outboxKey, JSON.stringify(entry)), timeoutMs, 'write').then(() => undefined, (error: unknown) => error ?? new Error('outbox write failed'))
  }

  /** Whether the outbox entry is written (tried again once, here, when its write failed). */
  async function outboxWritten(outcome: PromiseSettledResult<void>[], outboxKey?: string, entry?: OutboxEntry): Promise<boolean> {
    if (!outboxKey || outcome[1]!.status === 'fulfilled') return true
    return (await writeOutbox(outboxKey, entry!)) === undefined
  }

  // Background settling of batches whose requests answered 503 (see `settleLate`), and the
  // backoff waits `close()` cuts short.
  const lateWork = new Set<Promise<void>>()
  const sleepers = new Set<() => void>()
  let closing = false

  /** Waits before a background attempt again; false once the log is closing (no more attempts). */
  function retryLater(attempt: number): Promise<boolean> {
    if (closing) return Promise.resolve(false)
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        sleepers.delete(done)
        resolve(true)
      }
      const timer = setTimeout(done, Math.min(timeoutMs * 2 ** Math.min(attempt, 10), 30_000))
      timer.unref()
      sleepers.add(done)
    })
  }

  /**
   * Settles, in the background, a batch whose request answered 503 with its writes sent: waits for
   * them, reads the record back until storage answers (unless `there` is already known), and if it
   * is stored, writes its outbox entry until that works (it may have failed, or been dropped by a
   * forwarder that found no record behind it yet); then reports the batch, to be counted and
   * forwarded. Retries with backoff until done or until `close()`, which makes one last attempt.
   */
  function settleLate(late: AppendResult & { batchKey: string }, events: readonly EventEnvelope[], receivedAt: number, written: Promise<PromiseSettledResult<void>[]>, there: boolean | undefined, outboxKey?: string, entry?: OutboxEntry): void {
    const run = (async () => {
      const outcome = await written
      for (let attempt = 0; there === undefined; attempt++) {
        there = await recordLanded(outcome, late.batchKey)
        if (there === undefined && !(await retryLater(attempt))) return
      }
      if (!there) {
        if (outboxKey) options.onUnstored?.(outboxKey, entry!)
        return
      }
      for (let attempt = 0; outboxKey; attempt++) {
        const error = await writeOutbox(outboxKey, entry!)
        if (error === undefined) break
        if (attempt === 0) options.onError?.(new Error(`outbox entry of stored batch ${late.batchKey} not written yet, retrying: ${(error as Error).message ?? error}`, { cause: error }))
        if (!(await retryLater(attempt))) {
          options.onError?.(new Error(`outbox entry of stored batch ${late.batchKey} not written before close: the batch is not forwarded`))
          return
        }
      }
      options.onLateWrite?.(late, events, receivedAt)
    })().catch((error) => {
      try {
        options.onError?.(error)
      } catch {}
    })
    lateWork.add(track(late.batchKey, run))
    void run.finally(() => lateWork.delete(run))
  }

  async function close(): Promise<void> {
    closing = true
    for (const sleeper of [...sleepers]) sleeper()
    if (lateWork.size > 0) await withTimeout(Promise.allSettled([...lateWork]), timeoutMs * 2, 'close').catch(() => {})
  }

  async function list(query: EventQuery = {}): Promise<EventPage> {
    const until = toMs(query.until, now() + 1)
    const since = toMs(query.since, until - 7 * 24 * HOUR)
    const limit = Math.min(Math.max(1, Math.floor(query.limit ?? 100)), 1000)
    let after: { key: string; index: number } | undefined
    if (query.cursor) {
      const decoded = Buffer.from(query.cursor, 'base64url').toString('utf8')
      const split = decoded.lastIndexOf('|')
      const index = Number(decoded.slice(split + 1))
      if (split < 0 || !decoded.startsWith(`${batchBase}:`) || !Number.isInteger(index)) {
        throw new IngestError('invalid_query', 'cursor: not a cursor returned by this API')
      }
      after = { key: decoded.slice(0, split), index }
    }
    const newestFirst = (a: string, b: string) => (batchTime(b) - batchTime(a)) || (a < b ? 1 : a > b ? -1 : 0)
    const firstHour = hourBucket(after ? Math.min(until, batchTime(after.key)) : until)
    const lastHour = hourBucket(since)
    const hours = (await readHours()).filter((h) => h <= firstHour && h >= lastHour).sort().reverse()
    const events: StoredEvent[] = []
    const cursors: string[] = []
    for (const hour of hours) {
      const keys = (await withTimeout(storage.getKeys(`${batchBase}:${hour}`), timeoutMs, 'list')).sort(newestFirst)
      for (const key of keys) {
        if (after && newestFirst(key, after.key) < 0) continue
        const time = batchTime(key)
        if (time >= until || time < since) continue
        const record = await readRecord(key)
        if (!record) continue
        for (let index = record.events.length - 1; index >= 0; index--) {
          if (after && key === after.key && index >= after.index) continue
          const event = record.events[index]!
          if (query.name && event.name !== query.name) continue
          if (query.source && event.source !== query.source) continue
          if (events.length === limit) return { events, nextCursor: cursors.at(-1)! }
          events.push({ ...event, receivedAt: new Date(record.receivedAt).toISOString() })
          cursors.push(Buffer.from(`${key}|${index}`).toString('base64url'))
        }
      }
    }
    return { events, nextCursor: null }
  }

  async function get(id: string): Promise<StoredEvent | null> {
    const [value] = await withTimeout(claims.read([id]), timeoutMs, 'read')
    const batchKey = value ? parseClaim(value).batch : ''
    if (!batchKey) return null
    const record = await readRecord(batchKey)
    const event = record?.events.find((e) => e.id === id)
    return event && record ? { ...event, receivedAt: new Date(record.receivedAt).toISOString() } : null
  }

  async function prune({ olderThan, signal }: PruneOptions): Promise<{ batches: number; claims: number }> {
    const cutoff = toMs(olderThan, 0)
    const cutoffHour = hourBucket(cutoff)
    const hours = await readHours()
    let batches = 0
    const emptied: string[] = []
    for (const hour of hours.filter((h) => h <= cutoffHour)) {
      if (signal?.aborted) break
      const keys = await withTimeout(storage.getKeys(`${batchBase}:${hour}`), timeoutMs, 'list')
      let kept = 0
      // A few at a time: one by one, each removal would wait for its own flush on some drivers.
      // 256 keys at a time, with a turn of the event loop between: storage that answers at once
      // (memory) would otherwise keep the whole prune in one turn, holding every request meanwhile.
      for (let start = 0; start < keys.length; start += 256) {
        if (start > 0) await nextTurn()
        await eachLimited(keys.slice(start, start + 256), 16, async (key) => {
          // A batch still waiting in the outbox is kept until it has been forwarded.
          const pending = !signal?.aborted && options.outbox && await withTimeout(storage.hasItem(outboxKeyOf(key)), timeoutMs, 'read')
          if (!signal?.aborted && batchTime(key) < cutoff && !pending) {
            await withTimeout(storage.removeItem(key), timeoutMs, 'write')
            const held = inMemory.get(key)
            if (held) {
              inMemory.delete(key)
              keptEvents -= held.events
              keptBytes -= held.bytes
            }
            batches++
          } else kept++
        })
      }
      if (kept === 0 && hour < cutoffHour) emptied.push(hour)
    }
    if (emptied.length > 0) {
      await updateHours(async () => {
        // Still empty? An append that had the hour indexed already may have written into it since
        // it was listed (a batch given an old receive time).
        const empty: string[] = []
        for (const hour of emptied) {
          if ((await withTimeout(storage.getKeys(`${batchBase}:${hour}`), timeoutMs, 'list')).length === 0) empty.push(hour)
        }
        if (empty.length === 0) return
        await withTimeout(storage.setItem(hoursKey, (await readHours()).filter((h) => !empty.includes(h))), timeoutMs, 'write')
        if (empty.includes(indexedHour)) indexedHour = ''
      })
    }
    if (signal?.aborted) return { batches, claims: 0 }
    // Dedupe claims past the window go too (Redis expires them by itself).
    const claimCutoff = now() - windowMs
    const expired = await claims.expire((value) => parseClaim(value).at < claimCutoff, signal)
    return { batches, claims: expired }
  }

  return {
    append,
    list,
    get,
    prune,
    get corruptRecords() {
      return corrupt
    },
    atomicDedupe: claims.atomic,
    get kept() {
      return { batches: inMemory.size, events: keptEvents, bytes: keptBytes }
    },
    get dropped() {
      return { ...dropped }
    },
    close,
  }
}

