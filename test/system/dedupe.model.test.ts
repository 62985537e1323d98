/**
 * DESIGN §4, README "Guarantees": acknowledged means stored, and an id is stored once, across
 * instances sharing Redis or a directory, across restarts and `kill -9`. A model-based property
 * test (fast-check's `asyncModelRun` over generated commands, 12 to 24 a run): three event-ingest
 * processes, each behind a real HTTP server on loopback, share one Redis key prefix (one suite) or
 * one fs directory (the other). Each run is a random interleaving of
 *
 * - `IngestNew(instance, size)`: a batch of fresh ids, sent without waiting for its answer;
 * - `RetrySame(batch, other)`: an earlier batch again (the same ids) to another instance, possibly
 *   while the first request is still in flight;
 * - `KillAndRestart(instance | busiest, afterMs)`: SIGKILL, possibly with requests in flight (the
 *   busiest instance: the one with the most), then a new process in its place (same instance id,
 *   same storage);
 * - `KillDuringIngest(instance, size, afterMs)`: a new batch, and its instance killed while it
 *   stores it;
 * - `Wait(ms | answers)`: a pause, or until every request so far has its answer.
 *
 * One run in three has no kills (the two kill commands are skipped there).
 *
 * The model records each batch's answers: a 200 acknowledges every id of the batch (each one is
 * `accepted` or a duplicate, as the body counts them); a 503 or a connection cut by a kill leaves
 * them "maybe". After the commands, every batch still unacknowledged is retried until a 200, as a
 * client told to retry would (a claim orphaned by a kill is taken over 4 × storageTimeoutMs after
 * it was made). Then, over the stored events (GET /admin/events, every page):
 *
 * - every acknowledged id is stored exactly once, and as it was sent; no id is stored twice; no id
 *   is stored that was never sent;
 * - the answers agree: a batch sent after one of its requests got a 200 is all duplicates; the
 *   `accepted` of a batch's 200s add up to at most its size, and to its size when every request
 *   of it got a 200;
 * - stats (GET /admin/events/stats): on Redis the batch script counts the events it stores in the
 *   same step, so the count of accepted events equals the events stored in every run, kills
 *   included. On fs counts are flushed by each instance every 100 ms, so a kill loses the last
 *   ones: accepted equals the events stored in a run without kills, and is at most that in a run
 *   with kills. Duplicates counted equal the duplicates answered in a run without kills, on both.
 *
 * A 503 `in_progress` is the contract's answer while another instance holds an id: on fs (the
 * claim protocol) only; Redis stores a batch in one step and never answers it (a run that sees one
 * fails). `storage_unavailable` only when a storage step outlived storageTimeoutMs on a busy
 * machine: allowed, counted and printed.
 *
 * Bounded: FC_RUNS runs per backend (default 16) of 12 to 24 commands, no shrinking. Replay a
 * failure with the seed and path it prints: FC_SEED=<seed> FC_PATH=<path> runs the same commands
 * again (their timing is the machine's: the processes are real); FC_SHRINK=1 shrinks a failure
 * (slow: every step runs real processes).
 */
import { randomInt } from 'node:crypto'
import { Agent, request } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeEvent } from '../helpers/fixtures'
import { until } from '../helpers/stored'
import { startTs } from '../helpers/process'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'

const serverScript = fileURLToPath(new URL('../helpers/model-ingest-process.ts', import.meta.url))

const INSTANCES = 3
/** Each process's storageTimeoutMs: a claim a kill orphaned is taken over once 4 × this old. */
const STORAGE_TIMEOUT_MS = 1000
const ADMIN = 'model-admin-token'
const MIN_COMMANDS = 12
const MAX_COMMANDS = 24
const NUM_RUNS = Number(process.env.FC_RUNS ?? 16)
const SEED = process.env.FC_SEED === undefined ? randomInt(2 ** 31) : Number(process.env.FC_SEED)
const PATH = process.env.FC_PATH
const SHRINK = process.env.FC_SHRINK === '1'
/**
 * Where a 503 `in_progress` is an allowed answer: on the claim protocol, which fs runs and Redis
 * runs too until its one-step script plugs in (`atomicBatchStore`, src/storage/capabilities.ts).
 * A claim there never exists without its record, so nothing is ever in progress: set `redis` to
 * false then, and an `in_progress` on Redis fails the run.
 */
const IN_PROGRESS_ALLOWED: Record<string, boolean> = { fs: true, redis: false }
/** Backends whose batch write counts what it stores: stats are exact, kills included. */
const EXACT_ACCEPTED: Record<string, boolean> = { fs: false, redis: true }
/** How long a batch is retried after the commands before it counts as never acknowledged. */
const DRAIN_MS = 30_000

type SentEvent = Record<string, any> & { id: string }

// ---------------------------------------------------------------------------------------------
// The real system: three instance slots, each a child process replaced by a new one after a kill.

type Started = ReturnType<typeof startTs>

interface Child {
  started: Started
  url: string
  /** Connections to this process only: a restarted process never gets a dead socket of its predecessor. */
  agent: Agent
  inFlight: number
  killed: boolean
}

interface Slot {
  index: number
  instanceId: string
  /** The serving process; during a restart, the one starting. */
  ready: Promise<Child>
  /** The serving process, once it serves. */
  child?: Child
}

/** A request's outcome as the client sees it. */
type Outcome =
  | { kind: 'answer'; status: number; body: any; retryAfter: string | undefined }
  | { kind: 'failed'; message: string; killed: boolean }

class Cluster {
  readonly slots: Slot[] = []
  /** Every process started, for the clean-up. */
  readonly processes = new Set<Child>()
  /** Every event ever sent to this storage, by id. */
  readonly sent = new Map<string, SentEvent>()
  /** Processes that died without being killed by the test. */
  readonly crashes: string[] = []

  constructor(
    readonly name: string,
    private readonly storageArgs: [string, string],
  ) {}

  async start(): Promise<void> {
    for (let index = 0; index < INSTANCES; index++) {
      const instanceId = `model_${this.name}_${index}`
      const slot = { index, instanceId } as Slot
      slot.ready = this.spawn(slot)
      this.slots.push(slot)
    }
    await Promise.all(this.slots.map((slot) => slot.ready))
    // Stats register each instance with a read-modify-write: two first registrations at the same
    // moment can drop one for a minute. One instance after the other, each seen by another.
    for (const slot of this.slots) {
      const event = makeEvent({ id: `warm-${this.name}-${slot.index}` }) as SentEvent
      this.sent.set(event.id, event)
      const outcome = await this.post(slot.index, [event])
      if (outcome.kind !== 'answer' || outcome.status !== 200) throw new Error(`warm-up of instance ${slot.index}: ${JSON.stringify(outcome)}`)
      const viewer = slot.index === 0 ? 1 : 0
      await until(`instance ${slot.index} registered`, () => this.stats(viewer), (s) => s.instances === Math.max(2, slot.index + 1), 10_000)
    }
    await until('every instance registered', () => this.stats(0), (s) => s.instances === INSTANCES, 10_000)
  }

  private async spawn(slot: Slot): Promise<Child> {
    const { instanceId } = slot
    const started = startTs(serverScript, [...this.storageArgs, instanceId, ADMIN, String(STORAGE_TIMEOUT_MS)])
    const child: Child = { started, url: '', agent: new Agent({ keepAlive: true }), inFlight: 0, killed: false }
    this.processes.add(child)
    void started.closed.then(() => {
      child.agent.destroy()
      if (!child.killed) this.crashes.push(`${instanceId} exited by itself (${started.proc.exitCode ?? started.proc.signalCode}):\n${started.stderr()}`)
    })
    let timer: ReturnType<typeof setTimeout> | undefined
    const line = await Promise.race([
      started.waitForLine((l) => l.startsWith('LISTENING ')),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${instanceId} did not start within 30 s:\n${started.stderr()}`)), 30_000)
      }),
    ]).finally(() => clearTimeout(timer))
    child.url = line.slice('LISTENING '.length)
    slot.child = child
    return child
  }

  /**
   * SIGKILLs the slot's process (`afterMs` after the command, so requests just sent are in flight)
   * and starts a new one in the background; requests to the slot wait for it. Resolves with the
   * number of requests that were in flight at the kill.
   */
  async killAndRestart(which: number | 'busiest', afterMs: number): Promise<{ index: number; inFlight: number }> {
    let index = which === 'busiest' ? 0 : which
    if (which === 'busiest') {
      if (afterMs > 0) await sleep(afterMs)
      for (const slot of this.slots) if ((slot.child?.inFlight ?? -1) > (this.slots[index]!.child?.inFlight ?? -1)) index = slot.index
    }
    const slot = this.slots[index]!
    const child = await slot.ready
    if (which !== 'busiest' && afterMs > 0) await sleep(afterMs)
    const inFlight = child.inFlight
    child.killed = true
    child.started.proc.kill('SIGKILL')
    await child.started.closed
    if (child.started.proc.signalCode !== 'SIGKILL') this.crashes.push(`${slot.instanceId} did not die of SIGKILL: ${child.started.proc.exitCode}`)
    this.processes.delete(child)
    slot.child = undefined
    slot.ready = this.spawn(slot)
    // A start that fails is reported by whoever waits for the slot; never unhandled.
    slot.ready.catch(() => {})
    return { index, inFlight }
  }

  async post(index: number, events: readonly SentEvent[]): Promise<Outcome> {
    const child = await this.slots[index]!.ready
    child.inFlight++
    try {
      const { status, headers, text } = await send(child, 'POST', '/events/ingest', JSON.stringify(events))
      return { kind: 'answer', status, body: parse(text), retryAfter: headers['retry-after'] as string | undefined }
    } catch (error) {
      return { kind: 'failed', message: (error as Error).message, killed: child.killed }
    } finally {
      child.inFlight--
    }
  }

  async admin(index: number, path: string): Promise<any> {
    const child = await this.slots[index]!.ready
    const { status, text } = await send(child, 'GET', path, undefined, { authorization: `Bearer ${ADMIN}` })
    if (status !== 200) throw new Error(`GET ${path}: ${status} ${text}`)
    return JSON.parse(text)
  }

  stats(index = 0): Promise<{ instances: number; totals: { accepted: number; duplicates: number } }> {
    return this.admin(index, '/admin/events/stats')
  }

  /** Every stored event, through the admin listing, page by page. */
  async stored(): Promise<SentEvent[]> {
    const events: SentEvent[] = []
    let cursor: string | null = null
    do {
      const page: { events: SentEvent[]; nextCursor: string | null } = await this.admin(0, `/admin/events?limit=1000&since=0${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      events.push(...page.events)
      cursor = page.nextCursor
    } while (cursor)
    return events
  }

  /** Every slot serving (no restart under way). */
  async serving(): Promise<void> {
    await Promise.all(this.slots.map((slot) => slot.ready))
  }

  async dispose(): Promise<void> {
    for (const child of this.processes) {
      child.killed = true
      child.started.proc.kill('SIGKILL')
    }
    await Promise.all([...this.processes].map((child) => child.started.closed))
    this.processes.clear()
  }
}

function send(child: Child, method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }>((resolve, reject) => {
    const req = request(`${child.url}${path}`, { method, agent: child.agent, headers: { 'content-type': 'application/json', ...headers }, timeout: 20_000 }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (chunk: Buffer) => parts.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(parts).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within 20 s to ${method} ${path}`)))
    req.on('error', reject)
    req.end(body)
  })
}

function parse(text: string): any {
  try {
    return text ? JSON.parse(text) : undefined
  } catch {
    return text
  }
}


/** Stats totals once two reads 300 ms apart agree (within 5 s; the last read otherwise). */
async function settledTotals(cluster: Cluster): Promise<{ accepted: number; duplicates: number }> {
  let last = (await cluster.stats()).totals
  const deadline = performance.now() + 5000
  while (performance.now() < deadline) {
    await sleep(300)
    const next = (await cluster.stats()).totals
    if (next.accepted === last.accepted && next.duplicates === last.duplicates) return next
    last = next
  }
  return last
}

// ---------------------------------------------------------------------------------------------
// The model of one run: the batches sent and what their answers acknowledged.

interface Batch {
  index: number
  events: SentEvent[]
  /** The instance the batch was first sent to. */
  instance: number
  /** A request of it got a 200: every id is acknowledged. */
  acked: boolean
  requests: number
  /** Requests answered 200, and the `accepted` they summed. */
  oks: number
  accepted: number
}

interface Model {
  batches: Batch[]
  /** Runs without kills check stats exactly: there, every count reaches the storage. */
  kills: boolean
}

/** What the backends answered over the whole suite, printed at the end. */
interface Tally {
  runs: number
  commands: number
  requests: number
  ok: number
  inProgress: number
  unavailable: number
  cut: number
  kills: number
  killsMidRequest: number
  drainRequests: number
  ids: number
  /** Runs whose stats are checked to equal what was stored (without kills; on Redis, all). */
  exactStats: number
}

const emptyTally = (): Tally => ({ runs: 0, commands: 0, requests: 0, ok: 0, inProgress: 0, unavailable: 0, cut: 0, kills: 0, killsMidRequest: 0, drainRequests: 0, ids: 0, exactStats: 0 })

/** The system under test in one run, and the answers recorded into its model. */
class Run {
  readonly model: Model
  readonly violations: string[] = []
  private readonly requests = new Set<Promise<void>>()
  kills = 0
  private duplicatesAnswered = 0

  constructor(
    readonly cluster: Cluster,
    readonly tag: string,
    readonly tally: Tally,
    kills: boolean,
  ) {
    this.model = { batches: [], kills }
  }

  newBatch(instance: number, size: number): Batch {
    const index = this.model.batches.length
    const events = Array.from({ length: size }, (_, i) => {
      const id = `${this.tag}-b${index}-${i}`
      const event = makeEvent({ id, payload: { productId: `prod_${index}_${i}`, note: 'x'.repeat(randomInt(0, 200)) } }) as SentEvent
      this.cluster.sent.set(id, event)
      return event
    })
    const batch: Batch = { index, events, instance, acked: false, requests: 0, oks: 0, accepted: 0 }
    this.model.batches.push(batch)
    this.tally.ids += size
    return batch
  }

  /** Sends the batch without waiting for the answer; the answer is recorded when it comes. */
  send(batch: Batch, instance: number): void {
    const request = this.request(batch, instance, 'command').then(
      () => {},
      (error: unknown) => void this.violations.push(`batch ${batch.index} to instance ${instance}: ${String(error)}`),
    )
    this.requests.add(request)
    void request.finally(() => this.requests.delete(request))
  }

  private async request(batch: Batch, instance: number, phase: 'command' | 'drain'): Promise<Outcome> {
    const ackedBefore = batch.acked
    batch.requests++
    this.tally.requests++
    if (phase === 'drain') this.tally.drainRequests++
    const outcome = await this.cluster.post(instance, batch.events)
    const what = `batch ${batch.index} (${batch.events.length} events) to instance ${instance}`
    if (outcome.kind === 'failed') {
      if (outcome.killed) this.tally.cut++
      else this.violations.push(`${what}: the request failed, and its instance was not killed: ${outcome.message}`)
      return outcome
    }
    const { status, body } = outcome
    if (status === 200) {
      this.tally.ok++
      batch.oks++
      const { accepted, duplicates, rejected } = body as { accepted: number; duplicates: number; rejected: unknown[] }
      if (rejected.length !== 0 || accepted + duplicates !== batch.events.length) {
        this.violations.push(`${what}: 200 with ${accepted} accepted + ${duplicates} duplicates and ${rejected.length} rejected`)
      }
      if (ackedBefore && accepted !== 0) this.violations.push(`${what}: sent after a 200 of the same batch, yet ${accepted} accepted (stored again)`)
      batch.accepted += accepted
      batch.acked = true
      this.duplicatesAnswered += duplicates
    } else if (status === 503 && (body?.code === 'in_progress' || body?.code === 'storage_unavailable')) {
      if (body.code === 'in_progress') {
        this.tally.inProgress++
        if (!IN_PROGRESS_ALLOWED[this.cluster.name]) this.violations.push(`${what}: 503 in_progress, which ${this.cluster.name} never answers`)
      } else {
        this.tally.unavailable++
      }
      if (!/^\d+$/.test(outcome.retryAfter ?? '')) this.violations.push(`${what}: 503 ${body.code} without a Retry-After`)
    } else {
      this.violations.push(`${what}: ${status} ${JSON.stringify(body)}`)
    }
    return outcome
  }

  async waitForAnswers(): Promise<void> {
    while (this.requests.size > 0) await Promise.allSettled([...this.requests])
  }

  /** Kills an instance and starts it again; resolves with the instance killed. */
  async kill(which: number | 'busiest', afterMs: number): Promise<number> {
    const { index, inFlight } = await this.cluster.killAndRestart(which, afterMs)
    this.kills++
    this.tally.kills++
    if (inFlight > 0) this.tally.killsMidRequest++
    return index
  }

  /** Retries every batch without a 200 until it gets one, as a client told to retry would. */
  async drain(): Promise<void> {
    await this.waitForAnswers()
    await this.cluster.serving()
    await Promise.all(
      this.model.batches
        .filter((batch) => !batch.acked)
        .map(async (batch) => {
          const deadline = performance.now() + DRAIN_MS
          for (let attempt = 0; ; attempt++) {
            const outcome = await this.request(batch, (batch.instance + attempt) % INSTANCES, 'drain')
            if (outcome.kind === 'answer' && outcome.status === 200) return
            if (outcome.kind === 'failed' || performance.now() > deadline) {
              this.violations.push(`batch ${batch.index}: no 200 within ${DRAIN_MS} ms of retries after the commands`)
              return
            }
            await sleep(100 + randomInt(150))
          }
        }),
    )
  }

  /** The invariants, over everything stored so far; throws naming every one broken. */
  async verify(statsBefore: { accepted: number; duplicates: number }): Promise<void> {
    const problems = [...this.violations, ...this.cluster.crashes]
    const stored = await this.cluster.stored()
    const copies = new Map<string, number>()
    const notSent: string[] = []
    const different: string[] = []
    const missing: string[] = []
    for (const event of stored) {
      copies.set(event.id, (copies.get(event.id) ?? 0) + 1)
      const sent = this.cluster.sent.get(event.id)
      if (!sent) notSent.push(event.id)
      else if (!sameEvent(event, sent)) different.push(event.id)
    }
    const storedTwice = [...copies].filter(([, count]) => count > 1).map(([id, count]) => `${id} ×${count}`)
    const listIds = (what: string, list: string[]) => {
      if (list.length > 0) problems.unshift(`${what} (${list.length}): ${list.slice(0, 12).join(', ')}${list.length > 12 ? ', …' : ''}`)
    }
    let ids = 0
    for (const batch of this.model.batches) {
      ids += batch.events.length
      if (batch.acked) {
        for (const { id } of batch.events) if (!copies.has(id)) missing.push(id)
      }
      if (batch.accepted > batch.events.length) problems.push(`batch ${batch.index}: its 200s accepted ${batch.accepted} of ${batch.events.length} events`)
      if (batch.oks === batch.requests && batch.acked && batch.accepted !== batch.events.length) {
        problems.push(`batch ${batch.index}: every one of its ${batch.requests} requests got a 200, yet they accepted ${batch.accepted} of ${batch.events.length} events`)
      }
    }

    // Stats: every count of a run without kills reaches the storage within a flush (100 ms).
    const delta = (s: { totals: { accepted: number; duplicates: number } }) => ({
      accepted: s.totals.accepted - statsBefore.accepted,
      duplicates: s.totals.duplicates - statsBefore.duplicates,
    })
    const exact = { accepted: ids, duplicates: this.duplicatesAnswered }
    if (this.kills === 0) {
      this.tally.exactStats++
      const seen = delta(await until('stats', () => this.cluster.stats(), (s) => isDeepStrictEqual(delta(s), exact), 5000).catch(() => this.cluster.stats()))
      if (!isDeepStrictEqual(seen, exact)) problems.push(`stats of a run without kills: ${JSON.stringify(seen)}, stored and answered ${JSON.stringify(exact)}`)
    } else if (EXACT_ACCEPTED[this.cluster.name]) {
      this.tally.exactStats++
      const seen = delta(await until('stats', () => this.cluster.stats(), (s) => delta(s).accepted === ids, 5000).catch(() => this.cluster.stats()))
      if (seen.accepted !== ids) problems.push(`stats of a run with kills count ${seen.accepted} accepted for ${ids} events stored, though the batch write counts them`)
    } else {
      await sleep(300)
      const seen = delta(await this.cluster.stats())
      if (seen.accepted > ids) problems.push(`stats of a run with kills count ${seen.accepted} accepted for ${ids} events stored`)
    }
    listIds('stored but never sent', notSent)
    listIds('stored differently from what was sent', different)
    listIds('acknowledged, not stored', missing)
    listIds('stored more than once', storedTwice)
    if (problems.length > 0) throw new Error(`${problems.length} invariant(s) broken:\n${problems.slice(0, 40).join('\n')}`)
  }
}

/** The stored event is the sent envelope plus `receivedAt`. */
function sameEvent(stored: Record<string, any>, sent: SentEvent): boolean {
  const { receivedAt, ...rest } = stored
  return typeof receivedAt === 'string' && isDeepStrictEqual(rest, sent)
}

// ---------------------------------------------------------------------------------------------
// The commands.

type Cmd = fc.AsyncCommand<Model, Run>

class IngestNew implements Cmd {
  constructor(
    readonly instance: number,
    readonly size: number,
  ) {}
  check = () => true
  async run(_m: Model, r: Run) {
    r.tally.commands++
    r.send(r.newBatch(this.instance, this.size), this.instance)
  }
  toString = () => `IngestNew(${this.instance}, ${this.size})`
}

class RetrySame implements Cmd {
  private shown = ''
  constructor(
    /** `latest`: the batch sent last, whose first request is likely still in flight. */
    readonly pick: number | 'latest',
    readonly offset: number,
  ) {}
  check = (m: Readonly<Model>) => m.batches.length > 0
  async run(m: Model, r: Run) {
    const batch = m.batches[this.pick === 'latest' ? m.batches.length - 1 : this.pick % m.batches.length]!
    const instance = (batch.instance + this.offset) % INSTANCES
    this.shown = `batch ${batch.index} → instance ${instance}`
    r.tally.commands++
    r.send(batch, instance)
  }
  toString = () => `RetrySame(${this.shown || `pick ${this.pick}, +${this.offset}`})`
}

class KillAndRestart implements Cmd {
  private killed: number | undefined
  constructor(
    /** `busiest`: the instance with the most requests in flight `afterMs` from now. */
    readonly instance: number | 'busiest',
    readonly afterMs: number,
  ) {}
  check = (m: Readonly<Model>) => m.kills
  async run(_m: Model, r: Run) {
    r.tally.commands++
    this.killed = await r.kill(this.instance, this.afterMs)
  }
  toString = () => `KillAndRestart(${this.instance === 'busiest' ? `busiest${this.killed === undefined ? '' : `: ${this.killed}`}` : this.instance}, after ${this.afterMs} ms)`
}

/** A new batch to an instance, and that instance killed `afterMs` later, while it stores the batch. */
class KillDuringIngest implements Cmd {
  constructor(
    readonly instance: number,
    readonly size: number,
    readonly afterMs: number,
  ) {}
  check = (m: Readonly<Model>) => m.kills
  async run(_m: Model, r: Run) {
    r.tally.commands++
    r.send(r.newBatch(this.instance, this.size), this.instance)
    await r.kill(this.instance, this.afterMs)
  }
  toString = () => `KillDuringIngest(${this.instance}, ${this.size}, after ${this.afterMs} ms)`
}

class Wait implements Cmd {
  constructor(readonly ms: number | 'answers') {}
  check = () => true
  async run(_m: Model, r: Run) {
    r.tally.commands++
    if (this.ms === 'answers') await r.waitForAnswers()
    else await sleep(this.ms)
  }
  toString = () => `Wait(${this.ms === 'answers' ? 'answers' : `${this.ms} ms`})`
}

const instance = fc.nat({ max: INSTANCES - 1 })
const command = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(instance, fc.oneof(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 200 }))).map(([i, size]) => new IngestNew(i, size) as Cmd) },
  { weight: 5, arbitrary: fc.tuple(fc.oneof(fc.constant('latest' as const), fc.nat({ max: 1000 })), fc.integer({ min: 1, max: INSTANCES - 1 })).map(([pick, offset]) => new RetrySame(pick, offset) as Cmd) },
  { weight: 1, arbitrary: fc.tuple(fc.oneof(instance, fc.constant('busiest' as const)), fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 40 }))).map(([i, after]) => new KillAndRestart(i, after) as Cmd) },
  { weight: 1, arbitrary: fc.tuple(instance, fc.integer({ min: 20, max: 200 }), fc.integer({ min: 1, max: 20 })).map(([i, size, after]) => new KillDuringIngest(i, size, after) as Cmd) },
  { weight: 2, arbitrary: fc.oneof(fc.integer({ min: 0, max: 150 }), fc.constant('answers' as const)).map((ms) => new Wait(ms) as Cmd) },
)

// ---------------------------------------------------------------------------------------------

/** The suites' names, which `vitest -t` selects by. */
const SUITES = { redis: 'dedupe, model-based: three processes on one Redis prefix', fs: 'dedupe, model-based: three processes on one fs directory' }

async function check(cluster: Cluster): Promise<Tally> {
  const tally = emptyTally()
  let runIndex = 0
  // One run in three without kills.
  const kills = fc.oneof({ weight: 1, arbitrary: fc.constant(false) }, { weight: 2, arbitrary: fc.constant(true) })
  const property = fc.asyncProperty(kills, fc.array(command, { minLength: MIN_COMMANDS, maxLength: MAX_COMMANDS }), async (withKills, cmds) => {
    const run = new Run(cluster, `${cluster.name}-r${runIndex++}-${randomInt(36 ** 4).toString(36)}`, tally, withKills)
    tally.runs++
    // Counts of the run before (its last retries) reach the storage with each instance's flush: a
    // busy machine can delay them, so the run starts from totals that no longer move.
    const statsBefore = await settledTotals(cluster)
    try {
      await fc.asyncModelRun(() => ({ model: run.model, real: run }), cmds)
    } finally {
      // Whatever happened, the next run starts with every answer in and every instance serving.
      await run.waitForAnswers()
      await cluster.serving()
    }
    await run.drain()
    await run.verify(statsBefore)
  })
  console.info(`[dedupe.model] ${cluster.name}: seed ${SEED}${PATH ? `, path ${PATH}` : ''}, ${NUM_RUNS} runs (FC_SEED=${SEED} to replay)`)
  const details = await fc.check(property, { numRuns: NUM_RUNS, seed: SEED, ...(PATH ? { path: PATH } : {}), endOnFailure: !SHRINK })
  if (details.failed) {
    // Named by backend, with the failure itself in the message: both backends run the same
    // commands, and a report must never fold their two failures into one.
    const cause = details.errorInstance
    throw new Error(
      `${cluster.name}: ${fc.defaultReportMessage(details)}\n` +
        `Replay: FC_SEED=${details.seed} FC_PATH=${details.counterexamplePath} npx vitest run test/system/dedupe.model.test.ts -t '${SUITES[cluster.name as keyof typeof SUITES]}'\n\n` +
        (cause instanceof Error ? cause.message : String(cause)),
      { cause },
    )
  }
  return tally
}

function report(name: string, tally: Tally, ms: number) {
  console.info(
    `[dedupe.model] ${name}: ${tally.runs} runs, ${tally.commands} commands, ${tally.ids} ids, ${tally.requests} requests ` +
      `(${tally.ok} × 200, ${tally.inProgress} × 503 in_progress, ${tally.unavailable} × 503 storage_unavailable, ${tally.cut} cut by a kill, ` +
      `${tally.drainRequests} retries after the commands), ${tally.kills} kills (${tally.killsMidRequest} with requests in flight), ` +
      `stats equal to the events stored in ${tally.exactStats} runs, ${(ms / 1000).toFixed(1)} s`,
  )
}

describe(SUITES.redis, () => {
  const prefix = uniquePrefix('model')
  const cluster = new Cluster('redis', [redisUrl, prefix])

  beforeAll(async () => {
    await requireRedis()
    await cluster.start()
  }, 60_000)

  afterAll(async () => {
    await cluster.dispose()
    await deletePrefix(prefix)
  }, 30_000)

  it('stores every acknowledged id exactly once through interleaved ingests, retries elsewhere and kill -9', { timeout: 240_000 }, async () => {
    const started = performance.now()
    const tally = await check(cluster)
    report('redis', tally, performance.now() - started)
    expect(tally.runs).toBe(NUM_RUNS)
  })
})

describe(SUITES.fs, () => {
  let dir = ''
  let cluster: Cluster

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'event-ingest-model-'))
    cluster = new Cluster('fs', [`fs:${dir}`, '-'])
    await cluster.start()
  }, 60_000)

  afterAll(async () => {
    await cluster?.dispose()
    if (dir) await rm(dir, { recursive: true, force: true })
  }, 30_000)

  it('stores every acknowledged id exactly once through interleaved ingests, retries elsewhere and kill -9', { timeout: 240_000 }, async () => {
    const started = performance.now()
    const tally = await check(cluster)
    report('fs', tally, performance.now() - started)
    expect(tally.runs).toBe(NUM_RUNS)
  })
})
