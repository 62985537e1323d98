import { withTimeout } from '../base/timeout'
import type { EventEnvelope } from '../model/model'
import { parseBatchKey, parseClaim } from '../storage/layout'
import { STALE_AFTER_TIMEOUTS, type Attempt, type ClaimAppendContext, type ClaimRound, type Conflicts } from './claim-attempt'
import { ClaimWrite } from './claim-write'
import { batchBusy, idBusy, wake, whenSettled, type Flight } from './flights'
import type { AppendResult, RawBatch } from './types'

export type { ClaimAppendContext } from './claim-attempt'

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
  private readonly writer: ClaimWrite

  constructor(private readonly context: ClaimAppendContext) {
    this.claiming = context.claims.atomic ? undefined : new Map()
    this.writer = new ClaimWrite(context)
  }

  async append(events: readonly EventEnvelope[], receivedAt: number, raw?: RawBatch, skewMs?: number): Promise<AppendResult> {
    if (events.length === 0) return { stored: 0, duplicateIndexes: [] }
    const names = this.context.keys.next(receivedAt)
    const flight: Flight = { seq: names.seq, releasedAt: 0, done: false }
    this.flights.set(names.batchKey, flight)
    const attempt: Attempt = { ...names, events, ids: events.map((e) => e.id), receivedAt, raw, skewMs, flight, mine: [], duplicateIndexes: [], waited: false, claimsUnknown: false }
    try {
      // Before the first claim of this log, its process's identity is written (see ProcessOwners).
      const announced = this.context.owners?.announce()
      if (announced) await announced
      if (this.claiming) await this.takeTurn(attempt)
      const conflicts = await this.claimAll(attempt)
      if (conflicts) await this.judge(attempt, conflicts)
      return await this.writer.write(attempt)
    } catch (error) {
      return await this.writer.fail(attempt, error)
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
      await this.writer.releaseClaims(attempt.mine, attempt.claim, attempt.batchKey)
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
    const ended = new Map<string, Promise<boolean>>()
    // Whether the process that claimed for `batch` has certainly ended: its batch is never written.
    const gone = (batch: string) => {
      const { owners } = this.context
      if (!owners) return Promise.resolve(false)
      let check = ended.get(batch)
      if (!check) ended.set(batch, (check = owners.gone(batch)))
      return check
    }
    const reread = new Map<string, Promise<boolean>>()
    // The record of a batch whose process has ended, read once more: it may have written the
    // record after the first read and before it ended; now nothing can land it any more.
    const existsAfterEnd = (key: string) => {
      let check = reread.get(key)
      if (!check) reread.set(key, (check = this.context.records.read(key).then((record) => record !== null)))
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
      } else if (other.batch && age < windowMs && age < timeoutMs * STALE_AFTER_TIMEOUTS && !final && !(await gone(other.batch))) {
        throw idBusy(id)
      } else if (other.batch && age < windowMs && age < timeoutMs * STALE_AFTER_TIMEOUTS && !final && (await existsAfterEnd(other.batch))) {
        attempt.duplicateIndexes.push(position)
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

  private finish(attempt: Attempt): void {
    const { flight } = attempt
    this.flights.delete(attempt.batchKey)
    if (this.claiming) for (const id of attempt.ids) if (this.claiming.get(id) === flight) this.claiming.delete(id)
    if (attempt.tookOver) for (const id of attempt.tookOver) if (this.takingOver.get(id) === flight) this.takingOver.delete(id)
    flight.done = true
    wake(flight)
  }
}
