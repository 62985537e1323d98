import type { Storage } from 'unstorage'
import { IngestError } from '../core/errors'
import { withTimeout } from '../core/timeout'
import type { EventEnvelope } from '../model/model'
import type { IdClaims } from '../storage/claims'
import { hourBucket, parseBatchKey, parseClaim } from '../storage/layout'
import type { BatchKeys, BatchNames } from './batch-keys'
import { batchBusy, idBusy, wake, whenSettled, type Flight } from './flights'
import type { HourIndex } from './hours'
import { recordBytes, recordText, type RecordReader } from './record'
import type { LateSettling } from './settle'
import type { AppendResult, EventLogOptions, OutboxEntry, RawBatch } from './types'

/**
 * A claim is stale, and taken over when its batch is not stored, once it is this many storage
 * timeouts old: its batch's writes were sent within one timeout of claiming and are waited for two
 * more (the write, then its outcome); one more is a margin for a late event loop, writes queued in
 * a client, and clocks that differ between instances. A request may answer 200 later still, but
 * only for a record it has read back, which no take-over can follow (it needs the record absent).
 */
export const STALE_AFTER_TIMEOUTS = 4

/** What the claim protocol needs of the log. */
export interface ClaimAppendContext {
  storage: Storage
  instanceId: string
  windowMs: number
  timeoutMs: number
  now: () => number
  claims: IdClaims
  keys: BatchKeys
  hours: HourIndex
  records: RecordReader
  settling: LateSettling
  /** The driver keeps a record's bytes as given. */
  keepsBytes: boolean
  /** Every batch write is done when it returns: nothing to time. */
  localWrites: boolean
  onUnstored: EventLogOptions['onUnstored']
}

/** One append under the claim protocol: the batch, its keys, and what it holds so far. */
interface Attempt extends BatchNames {
  readonly events: readonly EventEnvelope[]
  readonly ids: readonly string[]
  readonly receivedAt: number
  readonly raw?: RawBatch
  readonly flight: Flight
  /** Ids this append holds a claim on. */
  readonly mine: string[]
  /** Positions that are duplicates: repeated in the batch, or stored by another batch. */
  readonly duplicateIndexes: number[]
  /** Whether it waited for others of this process (running out of time is then theirs). */
  waited: boolean
  /** Ids it registered in `takingOver`. */
  tookOver?: string[]
  /** A claim call failed: it may have claimed some of its ids before it did. */
  claimsUnknown: boolean
  /** The batch writes, once sent, and the answer they give. */
  writes?: Promise<void>[]
  result?: AppendResult
  outboxEntry?: OutboxEntry
}

/** Ids another batch holds, by position, with the claim values found on them. */
interface Conflicts {
  positions: number[]
  held: string[]
}

/** One claim call of the loop: the positions it asked for (all when undefined) and what it found. */
interface ClaimRound {
  asked?: number[]
  /** Releases counted before the call: a holder that let go after it is not waited on. */
  releasesSeen: number
  found: (string | null)[]
}

/**
 * The claim protocol of docs/design/dedupe.md, for drivers with no one-step batch write (the fs
 * driver, generic unstorage drivers): claim each id (T1), wait for batches of this process that
 * hold some (wait-die, T2/T3), judge claims held elsewhere and take stale ones over (T10, T12,
 * T14), write the record and outbox entry (T4), and on failure release, or hand the batch to late
 * settling (T5, T6).
 */
export class ClaimAppend {
  // Batches this process is writing right now, by key: a request that finds one of them holding
  // its ids waits for that batch's outcome (stored, or failed and released) instead of guessing.
  private readonly flights = new Map<string, Flight>()
  // Counts the times a flight let go of its claims before its outcome (see Flight.releasedAt).
  private releases = 0
  // On a store whose claims are a read then a write (not atomic), two batches of this process must
  // not claim one id at the same time: there, the ids being claimed, by the flight claiming them.
  private readonly claiming: Map<string, Flight> | undefined
  // Ids a flight of this process is taking over from a stale claim: two must not both take one.
  private readonly takingOver = new Map<string, Flight>()

  constructor(private readonly context: ClaimAppendContext) {
    this.claiming = context.claims.atomic ? undefined : new Map()
  }

  async append(events: readonly EventEnvelope[], receivedAt: number, raw?: RawBatch): Promise<AppendResult> {
    if (events.length === 0) return { stored: 0, duplicateIndexes: [] }
    const names = this.context.keys.next(receivedAt)
    const flight: Flight = { seq: names.seq, releasedAt: 0, done: false }
    this.flights.set(names.batchKey, flight)
    const attempt: Attempt = { ...names, events, ids: events.map((e) => e.id), receivedAt, raw, flight, mine: [], duplicateIndexes: [], waited: false, claimsUnknown: false }
    try {
      if (this.claiming) await this.takeTurn(attempt)
      const conflicts = await this.claimAll(attempt)
      if (conflicts) await this.judge(attempt, conflicts)
      return await this.write(attempt)
    } catch (error) {
      return await this.fail(attempt, error)
    } finally {
      this.finish(attempt)
    }
  }

  /**
   * Whether a claim was taken by a batch of this log that is done with it: not in flight, with
   * no work on it left in the background. Its outcome is final, stored or let go, so when its
   * record is not there, the record was deleted since (a prune, a cleared storage), and nothing
   * can land it later: the id is taken over at once instead of once the claim is stale.
   */
  private settledHere(claim: { batch: string }): boolean {
    return this.context.keys.mine(claim.batch) && !this.flights.has(claim.batch) && !this.context.settling.busy(claim.batch)
  }

  /** Lets go of `ids` where they still hold `claim`, bounded by the storage timeout (the release itself may run on). */
  private releaseClaims(ids: readonly string[], claim: string, batchKey: string): Promise<void> {
    const { claims, settling, timeoutMs } = this.context
    return withTimeout(settling.track(batchKey, claims.release(ids, claim)), timeoutMs, 'release')
  }

  /** Time left of this append's storage timeout, counted from its claim; 503 once there is none. */
  private timeLeft(attempt: Attempt): number {
    const left = this.context.timeoutMs - (this.context.now() - attempt.claimedAt)
    if (left <= 0) throw batchBusy()
    return left
  }

  /**
   * On claims that are not atomic: waits until no other append of this process claims any of these
   * ids, then takes them all at once (waiting while holding some could deadlock two batches that
   * share ids).
   */
  private async takeTurn(attempt: Attempt): Promise<void> {
    const claiming = this.claiming!
    for (;;) {
      const busy = attempt.ids.map((id) => claiming.get(id)).find((flight) => flight !== undefined)
      if (!busy) break
      const left = this.timeLeft(attempt)
      attempt.waited = true
      await whenSettled(busy, left)
    }
    for (const id of attempt.ids) claiming.set(id, attempt.flight)
  }

  /** Claims the ids at `positions` (all when undefined), bounded by the storage timeout. */
  private async claimAt(attempt: Attempt, positions: number[] | undefined): Promise<ClaimRound> {
    const { claims, timeoutMs, windowMs } = this.context
    const releasesSeen = this.releases
    const ids = positions ? positions.map((p) => attempt.ids[p]!) : attempt.ids
    // Claims kept in this process answer at once: nothing to time out.
    const claimed = claims.claim(ids, attempt.claim, windowMs)
    try {
      return { asked: positions, releasesSeen, found: await (claims.local ? claimed : withTimeout(claimed, timeoutMs, 'claim')) }
    } catch (error) {
      attempt.claimsUnknown = true
      throw error
    }
  }

  /** Sorts what a claim call found into ids now held, repeats within the batch, and conflicts. */
  private sort(attempt: Attempt, round: ClaimRound): Conflicts | undefined {
    let conflicts: Conflicts | undefined
    round.found.forEach((value, i) => {
      const position = round.asked ? round.asked[i]! : i
      if (value === null || value === undefined) attempt.mine.push(attempt.ids[position]!)
      // An id this very call claimed at an earlier position: repeated within the batch.
      else if (value === attempt.claim) attempt.duplicateIndexes.push(position)
      else {
        conflicts ??= { positions: [], held: [] }
        conflicts.positions.push(position)
        conflicts.held.push(value)
      }
    })
    return conflicts
  }

  /**
   * The claim loop (T1, T2): claims every id, then, while batches of this process still being
   * written hold some, waits for their outcome and claims those again. Waits follow wait-die, so
   * two batches never wait for each other (their claims can interleave on some stores): a batch
   * waits for younger holders, but before waiting for an older one it lets go of every claim it
   * holds and then starts over. Returns the claims held elsewhere, to be judged.
   */
  private async claimAll(attempt: Attempt): Promise<Conflicts | undefined> {
    let round = await this.claimAt(attempt, undefined)
    let claimedAgain = false
    for (;;) {
      const conflicts = this.sort(attempt, round)
      if (!conflicts) return undefined
      const { older, younger, finished } = this.holders(attempt, conflicts)
      if (!older && !younger) {
        // Stored, or failed and let go of its claims: claiming again tells which (once).
        if (!finished || claimedAgain) return conflicts
        claimedAgain = true
        round = await this.claimAt(attempt, conflicts.positions)
        continue
      }
      const left = this.timeLeft(attempt)
      attempt.waited = true
      if (older) round = await this.dieFor(attempt, older, round)
      else {
        if (younger!.releasedAt <= round.releasesSeen) await whenSettled(younger!, left)
        round = await this.claimAt(attempt, conflicts.positions)
      }
    }
  }

  /** The flights of this process holding conflicting claims: the first older one, else a younger one. */
  private holders(attempt: Attempt, conflicts: Conflicts): { older?: Flight; younger?: Flight; finished: boolean } {
    let younger: Flight | undefined
    // A holder of this process that is no longer in flight finished after the answer was read.
    let finished = false
    for (const value of conflicts.held) {
      const batch = parseClaim(value).batch
      const holder = this.flights.get(batch)
      if (!holder) {
        finished ||= parseBatchKey(batch)?.instance === this.context.instanceId
        continue
      }
      if (holder.seq < attempt.flight.seq) return { older: holder, finished }
      younger ??= holder
    }
    return { younger, finished }
  }

  /** Wait-die against an older holder: lets go of every claim, waits for it, and claims all again. */
  private async dieFor(attempt: Attempt, older: Flight, round: ClaimRound): Promise<ClaimRound> {
    if (attempt.mine.length > 0) {
      await this.releaseClaims(attempt.mine, attempt.claim, attempt.batchKey)
      attempt.mine.length = 0
      attempt.flight.releasedAt = ++this.releases
      wake(attempt.flight)
    }
    attempt.duplicateIndexes.length = 0
    // A holder that let go of its claims since they were read is not waited on (its wake-up has
    // passed): claim again.
    if (older.releasedAt <= round.releasesSeen) await whenSettled(older, this.context.timeoutMs - (this.context.now() - attempt.claimedAt))
    return this.claimAt(attempt, undefined)
  }

  /**
   * The judgement of claims held by other batches (T10, T13): a duplicate where the record is
   * there, 503 `in_progress` while the claim is young and may still be written, else (stale,
   * expired, or settled here with no record) the id is taken over (T12, T14).
   */
  private async judge(attempt: Attempt, conflicts: Conflicts): Promise<void> {
    const { now, windowMs, timeoutMs } = this.context
    const takeover: string[] = []
    // The stale claims judged, parallel to `takeover`.
    const stale: string[] = []
    // Ids taken over here: a repeat of one within the batch is a duplicate of it.
    const taken = new Set<string>()
    const seen = new Map<string, Promise<boolean>>()
    const exists = (key: string) => {
      let check = seen.get(key)
      if (!check) seen.set(key, (check = this.context.records.read(key).then((record) => record !== null)))
      return check
    }
    await Promise.all(conflicts.positions.map(async (position, i) => {
      const id = attempt.ids[position]!
      const other = parseClaim(conflicts.held[i]!)
      const age = now() - other.at
      // Judged before the record is read: a batch still settling may land its record while the
      // read is under way and be settled by the time it answers "absent".
      const final = this.settledHere(other)
      if (other.batch && age < windowMs && (await exists(other.batch))) {
        attempt.duplicateIndexes.push(position)
      } else if (other.batch && age < windowMs && age < timeoutMs * STALE_AFTER_TIMEOUTS && !final) {
        throw idBusy(id)
      } else if (taken.has(id)) {
        attempt.duplicateIndexes.push(position)
      } else {
        // Expired, or left by a write that failed (its owner gives up within timeoutMs of
        // claiming, see below): this batch takes the id over.
        taken.add(id)
        takeover.push(id)
        stale.push(conflicts.held[i]!)
      }
    }))
    if (takeover.length > 0) await this.takeOver(attempt, takeover, stale)
  }

  /**
   * Takes stale claims over (T12). One flight of this process at a time takes an id over, and only
   * while the claim still holds what was judged stale: another request, here or in another
   * instance, may have taken it over and stored it meanwhile. The replace is a compare-and-set
   * where the storage gives one (see ClaimStore), so of instances taking one claim over at once,
   * one wins; the others answer in_progress, and their retries find the winner's record.
   */
  private async takeOver(attempt: Attempt, takeover: string[], stale: string[]): Promise<void> {
    // Batches gone from the storage (pruned, or the storage cleared or restarted empty): the
    // hour index may have gone with them, so this batch checks it again.
    this.context.hours.forget()
    const busy = takeover.find((id) => this.takingOver.has(id))
    if (busy !== undefined) throw idBusy(busy)
    for (const id of takeover) this.takingOver.set(id, attempt.flight)
    attempt.tookOver = takeover
    const replaced = withTimeout(this.context.claims.replace(takeover, stale, attempt.claim, this.context.windowMs), this.context.timeoutMs, 'claim')
    const won = await replaced.catch((error: unknown) => {
      attempt.claimsUnknown = true
      throw error
    })
    for (let i = 0; i < takeover.length; i++) if (won[i]) attempt.mine.push(takeover[i]!)
    const lost = won.indexOf(false)
    if (lost >= 0) throw idBusy(takeover[lost]!)
  }

  /** Writes the record of the events not found duplicates, and the outbox entry (T4). */
  private async write(attempt: Attempt): Promise<AppendResult> {
    const { storage, now, timeoutMs } = this.context
    const { events, receivedAt, raw, batchKey, outboxKey, duplicateIndexes } = attempt
    duplicateIndexes.sort((a, b) => a - b)
    const storedPositions = duplicateIndexes.length === 0 ? undefined : events.map((_, p) => p).filter((p) => !duplicateIndexes.includes(p))
    if (storedPositions && storedPositions.length === 0) return { stored: 0, duplicateIndexes }
    const storedCount = storedPositions ? storedPositions.length : events.length
    await this.context.hours.ensure(hourBucket(receivedAt))
    // Another request may take these claims over once they are stale (STALE_AFTER_TIMEOUTS):
    // writing after timeoutMs could then put a second copy next to its own.
    if (now() - attempt.claimedAt > timeoutMs) {
      if (attempt.waited) throw batchBusy()
      throw new IngestError('storage_unavailable', `storage is too slow: claiming took over ${timeoutMs} ms`)
    }
    // The memory driver keeps the body's own bytes: off the JS heap, so stored events do not add
    // to the garbage collector's work, and with no copy when nothing else holds them.
    const bytes = this.context.keepsBytes ? recordBytes(receivedAt, raw, storedPositions) : undefined
    const write = bytes
      ? storage.setItemRaw(batchKey, bytes)
      : storage.setItem(batchKey, recordText(receivedAt, this.context.instanceId, raw, events, storedPositions))
    const writes = (attempt.writes = [write])
    if (outboxKey) {
      attempt.outboxEntry = { batch: batchKey, events: storedCount, receivedAt }
      writes.push(storage.setItem(outboxKey, JSON.stringify(attempt.outboxEntry)))
    }
    const result = (attempt.result = { stored: storedCount, duplicateIndexes, batchKey, outboxKey })
    // Writes to the memory driver are done when they return: no timer to race them against.
    const all: Promise<unknown> = writes.length === 1 ? write : Promise.all(writes)
    await (this.context.localWrites ? all : withTimeout(all, timeoutMs, 'write'))
    return result
  }

  /** After a failure: releases what is safe to release (T3, T5), or settles in the background (T6). */
  private async fail(attempt: Attempt, error: unknown): Promise<AppendResult> {
    const { mine, claim, batchKey } = attempt
    if (attempt.claimsUnknown) {
      // A claim call failed part way: every id this batch may hold goes (a release removes
      // only claims that still name this batch), in the background, since the storage that
      // just failed may still be failing and the request answers now. On Redis it runs after
      // the claim's own commands, so it also clears claims that land late.
      void this.releaseClaims(attempt.ids, claim, batchKey).catch(() => {})
    } else if (mine.length > 0 && !attempt.writes) {
      // Nothing was sent: the claims go.
      await this.releaseClaims(mine, claim, batchKey).catch(() => {})
    } else if (mine.length > 0) {
      const stored = await this.settleWrites(attempt)
      if (stored) return stored
    }
    if (error instanceof IngestError) throw error
    // The storage may have lost data meanwhile (a Redis restarted empty): check the hour index again.
    this.context.hours.forget()
    throw new IngestError('storage_unavailable', `storage is unavailable: ${(error as Error).message}`, undefined, { cause: error })
  }

  /**
   * Once sent, the writes are waited for, and a record that landed is never removed: another
   * request that read it meanwhile answered "duplicate", and a removal after that would lose an
   * acknowledged event. Resolves the result when the batch turns out stored, whole.
   */
  private async settleWrites(attempt: Attempt): Promise<AppendResult | undefined> {
    const { settling, timeoutMs } = this.context
    const { batchKey, outboxKey, outboxEntry } = attempt
    const written = Promise.allSettled(attempt.writes!)
    const outcome = await withTimeout(written, timeoutMs, 'write').catch(() => undefined)
    const there = outcome && await settling.recordLanded(outcome, batchKey)
    // Written, only late: stored, and acknowledged as such.
    if (there && await this.outboxWritten(outcome, outboxKey, outboxEntry)) return attempt.result!
    if (there === false) {
      // Not stored: the claims go. A record landing after this makes at worst a second copy,
      // never a loss. The outbox entry stays: the forwarder drops an entry with no record
      // behind it, and forwards one whose record lands after all.
      await this.releaseClaims(attempt.mine, attempt.claim, batchKey).catch(() => {})
      if (outboxKey) this.context.onUnstored?.(outboxKey, outboxEntry!)
      return undefined
    }
    // Stored without its outbox entry, still unsettled, or not readable back: the claims stay (a
    // retry is told duplicates once the record is there) and the rest is settled in the background.
    const late = { result: { ...attempt.result!, batchKey }, events: attempt.events, receivedAt: attempt.receivedAt, outboxKey, entry: outboxEntry }
    settling.settleWrites(late, written, there)
    return undefined
  }

  /** Whether the outbox entry is written (tried again once, here, when its write failed). */
  private async outboxWritten(outcome: PromiseSettledResult<void>[], outboxKey?: string, entry?: OutboxEntry): Promise<boolean> {
    if (!outboxKey || outcome[1]!.status === 'fulfilled') return true
    return (await this.context.settling.writeOutbox(outboxKey, entry!)) === undefined
  }

  private finish(attempt: Attempt): void {
    const { flight } = attempt
    this.flights.delete(attempt.batchKey)
    if (this.claiming) for (const id of attempt.ids) if (this.claiming.get(id) === flight) this.claiming.delete(id)
    if (attempt.tookOver) for (const id of attempt.tookOver) if (this.takingOver.get(id) === flight) this.takingOver.delete(id)
    flight.done = true
    wake(flight)
  }
}
