/**
 * DESIGN §6 across real processes: forwarding is at-least-once through a durable outbox, a crashed
 * instance's batches are picked up by the next one, and leases keep two instances from delivering
 * the same batch at the same time.
 *
 * Child processes (test/helpers/forward-ingest-process.ts) run the real product behind HTTP; this
 * process sends them batches, records which were acknowledged, runs the sink (a loopback server
 * that records every request, which instance sent it, and overlapping in-flight deliveries of one
 * event id), SIGKILLs children while deliveries fail, and starts the cores that take over.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createServer, type ServerResponse } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import Redis from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest, type EventIngest, type ForwardingState, type SinkOptions, type StorageOption } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'
import { databaseUrl, dropSchemas, requirePostgres, uniqueSchema } from '../helpers/postgres'
import { closeServer, listen } from '../helpers/servers'
import { waitFor } from '../helpers/sink'

const projectRoot = fileURLToPath(new URL('../..', import.meta.url))
const childScript = fileURLToPath(new URL('../helpers/forward-ingest-process.ts', import.meta.url))

const LEASE_MS = 1000
const HEARTBEAT_MS = 200
/** Shorter than the lease: an attempt never outlives the lease taken for it. */
const TIMEOUT_MS = 600
/** Slack for timing bounds: a lease is taken a few ms before its request reaches the sink. */
const SLACK_MS = 150
/** After this long without a heartbeat an instance counts as dead (the forwarder's rule). */
const STALE_MS = Math.max(LEASE_MS, HEARTBEAT_MS * 3)

const sinkFor = (url: string, from: string, extra: Partial<SinkOptions> = {}): SinkOptions => ({
  url,
  headers: { 'x-from': from },
  timeoutMs: TIMEOUT_MS,
  minBackoffMs: 20,
  maxBackoffMs: 200,
  leaseMs: LEASE_MS,
  heartbeatMs: HEARTBEAT_MS,
  ...extra,
})

// ---------------------------------------------------------------------------------------------
// Resources, released in afterAll whatever happened.

const children = new Set<Child>()
const cores: EventIngest<any>[] = []
const sinks: { close(): Promise<void> }[] = []
const dirs: string[] = []
const prefixes: string[] = []
const report: string[] = []

const schemas: string[] = []

beforeAll(async () => {
  await requireRedis()
  await requirePostgres()
})

afterAll(async () => {
  for (const child of children) child.proc.kill('SIGKILL')
  await Promise.all([...children].map((child) => child.closed))
  await Promise.allSettled(cores.map((core) => core.close()))
  await Promise.allSettled(sinks.map((sink) => sink.close()))
  await Promise.allSettled(prefixes.map((prefix) => deletePrefix(prefix)))
  await Promise.allSettled(schemas.map((schema) => dropSchemas(schema)))
  await Promise.allSettled(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  if (report.length > 0) console.info(`[forwarding.processes]\n  ${report.join('\n  ')}`)
})

async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `ei-fwd-${label}-`))
  dirs.push(dir)
  return dir
}

function redisStorage(label: string): StorageOption {
  const base = uniquePrefix(`fwd-${label}`)
  prefixes.push(base)
  return { driver: 'redis', url: redisUrl, base }
}

function postgresStorage(label: string): StorageOption {
  const schema = uniqueSchema(`fwd_${label}`)
  schemas.push(schema)
  return { driver: 'postgres', url: databaseUrl, schema }
}

async function startCore(storage: StorageOption, instanceId: string, sink: SinkOptions): Promise<EventIngest<any>> {
  // A short storage timeout: an outbox entry whose batch write a kill cut off is dropped after 4×.
  const core = createEventIngest({ env: {}, storage, instanceId, sink, storageTimeoutMs: 1000 })
  cores.push(core)
  await core.ready()
  return core
}

/** The forwarders' heartbeat registry in a Redis prefix (instance id → last beat, ms), read directly from its hash. */
async function redisHeartbeats(base: string): Promise<Record<string, number>> {
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  try {
    const seen = await client.hgetall(`${base}:events:seen`)
    return Object.fromEntries(Object.entries(seen).map(([id, at]) => [id, Number(at)]))
  } finally {
    client.disconnect()
  }
}

/** Outbox keys left in a Redis prefix, read directly (no forwarder involved). */
async function redisOutboxKeys(base: string): Promise<string[]> {
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  try {
    const found: string[] = []
    let cursor = '0'
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${base}:events:o:*`, 'COUNT', 1000)
      cursor = next
      found.push(...keys)
    } while (cursor !== '0')
    return found
  } finally {
    client.disconnect()
  }
}

// ---------------------------------------------------------------------------------------------
// The sink: records every request (who sent it, when, which ids, the outcome) and overlaps.

type Outcome = { status: number; delayMs?: number } | 'hang'

interface Delivery {
  from: string
  at: number
  ids: string[]
  key: string
  /** The status sent, `hang`, or `cut` (the client went away first). */
  outcome: number | 'hang' | 'cut'
  endedAt?: number
}

async function startRecordingSink(initial: (from: string) => Outcome) {
  let behaviour = initial
  const deliveries: Delivery[] = []
  const openById = new Map<string, number>()
  const overlaps: string[] = []
  /** Requests that carry one event more than once. */
  const repeats: string[] = []
  const hanging = new Set<ServerResponse>()
  const server = createServer(async (req, res) => {
    let text = ''
    for await (const chunk of req) text += chunk
    const delivery: Delivery = {
      from: String(req.headers['x-from'] ?? '?'),
      at: Date.now(),
      ids: (JSON.parse(text) as { id: string }[]).map((event) => event.id),
      key: String(req.headers['idempotency-key']),
      outcome: 'cut',
    }
    deliveries.push(delivery)
    const distinct = new Set(delivery.ids)
    if (distinct.size !== delivery.ids.length) repeats.push(`${delivery.from} at ${delivery.at}: ${delivery.ids.length - distinct.size} repeated ids in [${delivery.ids.join(' ')}]`)
    // A request carrying an id while another request carrying it is still open: concurrent delivery.
    for (const id of distinct) {
      const open = openById.get(id) ?? 0
      if (open > 0) overlaps.push(`${id}: from ${delivery.from} at ${delivery.at} while ${open} other request(s) carrying it were open`)
      openById.set(id, open + 1)
    }
    let ended = false
    const end = () => {
      if (ended) return
      ended = true
      delivery.endedAt = Date.now()
      for (const id of distinct) openById.set(id, openById.get(id)! - 1)
    }
    res.once('finish', end)
    res.once('close', end)
    const outcome = behaviour(delivery.from)
    if (outcome === 'hang') {
      delivery.outcome = 'hang'
      hanging.add(res)
      res.once('close', () => hanging.delete(res))
      return
    }
    if (outcome.delayMs) await sleep(outcome.delayMs)
    if (ended || res.destroyed) return
    delivery.outcome = outcome.status
    res.writeHead(outcome.status, { 'content-type': 'application/json' })
    res.end('{}')
  })
  const url = await listen(server)
  const stored = (from?: string) => deliveries.filter((d) => typeof d.outcome === 'number' && d.outcome >= 200 && d.outcome < 300 && (!from || d.from === from))
  const counts = () => {
    const counted = new Map<string, number>()
    for (const d of stored()) for (const id of d.ids) counted.set(id, (counted.get(id) ?? 0) + 1)
    return counted
  }
  const sink = {
    url: `${url}/sink`,
    deliveries,
    overlaps,
    repeats,
    set(next: (from: string) => Outcome) {
      behaviour = next
    },
    /** Successful deliveries, optionally only those from one sender. */
    stored,
    sentBy: (from: string) => deliveries.filter((d) => d.from === from),
    /** How often each id was delivered successfully. */
    counts,
    missing(ids: Iterable<string>) {
      const counted = counts()
      return [...ids].filter((id) => !counted.has(id))
    },
    duplicates: () => [...counts()].filter(([, n]) => n > 1).map(([id, n]) => `${id}×${n}`),
    /** Who delivered an id, when: for reports. */
    trail: (id: string) => stored().filter((d) => d.ids.includes(id)).map((d) => `${d.from}@${d.at % 100_000}`).join(','),
    close() {
      for (const res of hanging) res.destroy()
      return closeServer(server)
    },
  }
  sinks.push(sink)
  return sink
}

// ---------------------------------------------------------------------------------------------
// Children and senders.

interface Child {
  name: string
  proc: ChildProcessWithoutNullStreams
  url: string
  lines: string[]
  closed: Promise<void>
  waitForLine(test: (line: string) => boolean, from?: number, timeoutMs?: number): Promise<string>
  state(): Promise<ForwardingState>
  stderr(): string
}

async function startChild(name: string, config: { storage: StorageOption; instanceId: string; sink: SinkOptions }): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', childScript, JSON.stringify(config)], { cwd: projectRoot, stdio: 'pipe' })
  const lines: string[] = []
  const listeners = new Set<() => void>()
  let partial = ''
  let stderr = ''
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n')
    partial = parts.pop()!
    lines.push(...parts)
    for (const listener of listeners) listener()
  })
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const closed = new Promise<void>((resolve) => proc.on('close', () => resolve()))
  const waitForLine = (test: (line: string) => boolean, from = 0, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        listeners.delete(check)
        reject(new Error(`${name}: no expected line within ${timeoutMs} ms:\n${stderr}`))
      }, timeoutMs)
      const check = () => {
        const line = lines.slice(from).find(test)
        if (line === undefined) return false
        listeners.delete(check)
        clearTimeout(timer)
        resolve(line)
        return true
      }
      listeners.add(check)
      check()
      void closed.then(() => {
        if (check()) return
        clearTimeout(timer)
        reject(new Error(`${name} exited without the expected line:\n${stderr}`))
      })
    })
  const child: Child = {
    name,
    proc,
    url: '',
    lines,
    closed,
    waitForLine,
    async state() {
      const from = lines.length
      proc.stdin.write('STATE\n')
      const line = await waitForLine((l) => l.startsWith('STATE '), from, 5000)
      return JSON.parse(line.slice('STATE '.length)) as ForwardingState
    },
    stderr: () => stderr,
  }
  // Registered before anything can fail, so afterAll kills it whatever happens next.
  children.add(child)
  child.url = (await waitForLine((line) => line.startsWith('READY '))).slice('READY '.length)
  return child
}

async function kill(child: Child): Promise<number> {
  child.proc.kill('SIGKILL')
  const at = Date.now()
  await child.closed
  children.delete(child)
  expect(child.proc.signalCode, `${child.name} died of the kill:\n${child.stderr()}`).toBe('SIGKILL')
  return at
}

let sequence = 0

/** Posts one batch; returns its ids when acknowledged (200 with every event accepted or a duplicate). */
async function post(url: string, label: string, size: number): Promise<string[]> {
  const events = Array.from({ length: size }, () => makeEvent({ id: `${label}_${(sequence++).toString(36)}` }))
  try {
    const response = await fetch(`${url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(events) })
    const body = (await response.json()) as { accepted: number; duplicates: number }
    return response.status === 200 && body.accepted + body.duplicates === events.length ? events.map((e) => e.id as string) : []
  } catch {
    return [] // cut by a kill: not acknowledged
  }
}

/** Senders posting batches of 1–4 events in a loop until stopped; acknowledged ids land in `acked`. */
function startSenders(url: string, label: string, acked: Set<string>, count = 2, pauseMs = 15) {
  let stopped = false
  const loops = Array.from({ length: count }, async () => {
    while (!stopped) {
      for (const id of await post(url, label, 1 + Math.floor(Math.random() * 4))) acked.add(id)
      await sleep(pauseMs)
    }
  })
  return {
    async stop() {
      stopped = true
      await Promise.all(loops)
    },
  }
}

const firstAt = (deliveries: Delivery[]) => (deliveries.length > 0 ? Math.min(...deliveries.map((d) => d.at)) : Number.NaN)
const carrying = (deliveries: Delivery[], ids: Iterable<string>) => {
  const wanted = new Set(ids)
  return deliveries.filter((d) => d.ids.some((id) => wanted.has(id)))
}

// ---------------------------------------------------------------------------------------------

describe('forwarding across processes: kill -9 with a non-empty outbox', () => {
  for (const kind of ['fs', 'redis', 'postgres'] as const) {
    for (const sameId of [false, true]) {
      const title = sameId
        ? `${kind}: a restart with the same instanceId resumes delivery at once`
        : `${kind}: a new instance adopts the dead one's outbox once its heartbeat and leases are stale`
      it(title, { timeout: 30_000 }, async () => {
        const label = `${kind}_${sameId ? 'same' : 'new'}`
        const storage = kind === 'fs' ? `fs:${await tempDir(label)}` : kind === 'redis' ? redisStorage(label) : postgresStorage(label)
        const sink = await startRecordingSink(() => ({ status: 503 }))
        const deadId = `dead_${label}`
        const child = await startChild(deadId, { storage, instanceId: deadId, sink: sinkFor(sink.url, 'dead') })

        // Ingest over HTTP while every delivery fails; kill the child with senders still sending.
        const acked = new Set<string>()
        const senders = startSenders(child.url, label, acked)
        await waitFor(() => sink.sentBy('dead').length >= 4 && acked.size >= 20, 15_000, 'failing deliveries and acknowledged events')
        const killedAt = await kill(child)
        await senders.stop()
        const deadRequests = sink.sentBy('dead')
        expect(deadRequests.every((d) => d.outcome === 503), 'the dead instance delivered nothing').toBe(true)
        const lastDead = deadRequests.at(-1)!

        sink.set(() => ({ status: 200 }))
        const restartedAt = Date.now()
        const nextId = sameId ? deadId : `next_${label}`
        const core = await startCore(storage, nextId, sinkFor(sink.url, 'next'))
        await waitFor(() => sink.missing(acked).length === 0, 15_000, 'every acknowledged event at the sink')
        await waitFor(async () => (await core.stats()).forwarding!.backlog === 0, 10_000, 'an empty backlog')
        expect((await core.stats()).forwarding).toMatchObject({ backlog: 0, backlogEvents: 0, oldestPendingMs: null })
        expect(await core.storage!.getKeys('events:o'), 'outbox entries left').toEqual([])

        const next = sink.stored('next')
        if (sameId) {
          // Its own outbox, its own leases: nothing to wait for.
          expect(firstAt(next) - restartedAt).toBeLessThan(LEASE_MS)
        } else {
          // Not before the dead instance's heartbeat went stale…
          expect(firstAt(next)).toBeGreaterThanOrEqual(killedAt - HEARTBEAT_MS + STALE_MS - SLACK_MS)
          // …and the batches it held a lease on not before that lease ran out.
          expect(firstAt(carrying(next, lastDead.ids))).toBeGreaterThanOrEqual(lastDead.at + LEASE_MS - SLACK_MS)
        }
        expect(sink.overlaps).toEqual([])
        expect(sink.repeats, 'requests carrying an event twice').toEqual([])
        const duplicates = sink.duplicates()
        report.push(
          `${label}: ${acked.size} acked ids, ${deadRequests.length} failed attempts before the kill, ` +
            `first delivery ${firstAt(next) - killedAt} ms after the kill (${firstAt(next) - restartedAt} ms after the restart), ` +
            `${next.length} sink requests after it, ${sink.counts().size - acked.size} delivered ids never acked, ` +
            `duplicates: ${duplicates.length}${duplicates.length ? ` [${duplicates.slice(0, 10).join(' ')}]` : ''}`,
        )
        await core.close()
      })
    }
  }
})

describe('forwarding across processes: two instances on one Redis', () => {
  it('never delivers a batch twice at the same time, and a killed instance\'s leased batches wait for the lease', { timeout: 60_000 }, async () => {
    const storage = redisStorage('two')
    const base = (storage as { base: string }).base
    const SLOW_MS = 200
    const sink = await startRecordingSink((from) => (from === 'C' ? { status: 503 } : { status: 200, delayMs: SLOW_MS }))

    // A dead instance C leaves a backlog that A and B will both adopt and compete for.
    const c = await startChild('C', { storage, instanceId: 'fwd_C', sink: sinkFor(sink.url, 'C') })
    const ackedC = new Set<string>()
    const sendersC = startSenders(c.url, 'C', ackedC, 3)
    await waitFor(() => ackedC.size >= 120 && sink.sentBy('C').length >= 2, 15_000, 'a backlog in C')
    await kill(c)
    await sendersC.stop()
    // Once C's heartbeat is stale, A and B both take its whole outbox at start: they compete for it.
    await sleep(STALE_MS)

    // Small groups, so that C's backlog takes many rounds to deliver.
    const [a, b] = await Promise.all([
      startChild('A', { storage, instanceId: 'fwd_A', sink: sinkFor(sink.url, 'A', { maxBatchEvents: 8 }) }),
      startChild('B', { storage, instanceId: 'fwd_B', sink: sinkFor(sink.url, 'B', { maxBatchEvents: 8 }) }),
    ])
    const ackedA = new Set<string>()
    const ackedB = new Set<string>()
    const sendersA = startSenders(a.url, 'A', ackedA, 2, 60)
    const sendersB = startSenders(b.url, 'B', ackedB, 2, 60)
    await sleep(1500)
    await Promise.all([sendersA.stop(), sendersB.stop()])
    const all = [...ackedC, ...ackedA, ...ackedB]
    await waitFor(() => sink.missing(all).length === 0, 30_000, 'every acknowledged event of A, B and C at the sink')
    await waitFor(async () => (await a.state()).backlog === 0 && (await b.state()).backlog === 0, 10_000, 'empty backlogs')

    const cByA = carrying(sink.stored('A'), ackedC)
    const cByB = carrying(sink.stored('B'), ackedC)
    expect(sink.overlaps, 'ids delivered by two requests at the same time').toEqual([])
    expect(cByA.length, "A delivered some of C's batches").toBeGreaterThan(0)
    expect(cByB.length, "B delivered some of C's batches").toBeGreaterThan(0)
    const phase1Duplicates = sink.duplicates()
    report.push(
      `two instances, phase 1: ${ackedC.size} ids of dead C delivered in ${cByA.length} requests by A and ${cByB.length} by B; ` +
        `${ackedA.size} + ${ackedB.size} ids ingested by A and B; ${sink.stored().length} successful requests, no overlaps; ` +
        `duplicates: ${phase1Duplicates.length}${phase1Duplicates.length ? ` [${phase1Duplicates.slice(0, 6).map((d) => `${d} by ${sink.trail(d.split('×')[0]!)}`).join(' ')}]` : ''}`,
    )

    // Phase 2: A's requests hang, so A holds a lease on its group when it is killed.
    sink.set((from) => (from === 'A' ? 'hang' : { status: 200, delayMs: 50 }))
    const before = sink.deliveries.length
    const leasedIds = await post(a.url, 'A2', 10)
    expect(leasedIds).toHaveLength(10)
    await waitFor(() => carrying(sink.deliveries.slice(before), leasedIds).length >= 1, 5000, 'A delivering')
    // Batches queued behind the hanging group: in A's outbox, not under a lease.
    const unleasedIds = [...(await post(a.url, 'A3', 3)), ...(await post(a.url, 'A3', 3))]
    expect(unleasedIds).toHaveLength(6)
    // Wait for a retry (a fresh attempt after the timeout, under a renewed lease), then kill A during it.
    await waitFor(() => carrying(sink.sentBy('A').slice(-5), leasedIds).length >= 2, 5000, 'A retrying')
    // A's last heartbeat as stored: on a loaded machine its timer may run late, so the bound below
    // starts from the beat itself rather than from the kill.
    const beatOfA = (await redisHeartbeats(base)).fwd_A
    expect(beatOfA, "A's heartbeat in the registry").toBeTypeOf('number')
    const killedAt = await kill(a)
    const lastA = sink.sentBy('A').at(-1)!
    expect(lastA.outcome).toBe('hang')
    expect(lastA.ids).toEqual(leasedIds)

    await waitFor(() => sink.missing([...leasedIds, ...unleasedIds]).length === 0, 15_000, "A's batches delivered by B")
    await waitFor(async () => (await b.state()).backlog === 0, 5000, "B's empty backlog")
    const leasedByB = carrying(sink.stored('B'), leasedIds)
    const unleasedByB = carrying(sink.stored('B'), unleasedIds)
    expect(leasedByB.length).toBeGreaterThan(0)
    expect(unleasedByB.length).toBeGreaterThan(0)
    // Not before B could see A as dead: each instance writes only its own registry entry, so no
    // heartbeat of A's is lost to B's, and A's last one is no earlier than the one read above…
    expect(firstAt(unleasedByB)).toBeGreaterThanOrEqual(Math.min(killedAt - HEARTBEAT_MS, beatOfA!) + STALE_MS - SLACK_MS)
    // …and A's leased group not before its lease ran out.
    expect(firstAt(leasedByB)).toBeGreaterThanOrEqual(lastA.at + LEASE_MS - SLACK_MS)
    expect(sink.overlaps, 'ids delivered by two requests at the same time').toEqual([])
    expect(sink.repeats, 'requests carrying an event twice').toEqual([])
    expect(await redisOutboxKeys(base), 'outbox entries left in Redis').toEqual([])
    const duplicates = sink.duplicates()
    report.push(
      `two instances, phase 2: A killed ${killedAt - lastA.at} ms into a hanging attempt; B delivered A's unleased ids ` +
        `${firstAt(unleasedByB) - killedAt} ms after the kill and its leased ids ${firstAt(leasedByB) - lastA.at} ms after A's last request; ` +
        `duplicates overall: ${duplicates.length}${duplicates.length ? ` [${duplicates.slice(0, 10).join(' ')}]` : ''}`,
    )
  })
})

describe('forwarding across processes: hand-over without a restart', () => {
  it("a live instance delivers what a gracefully closed instance left in its outbox", { timeout: 30_000 }, async () => {
    const storage = redisStorage('closed')
    const sink = await startRecordingSink((from) => (from === 'A' ? { status: 503 } : { status: 200 }))
    const survivor = await startCore(storage, 'fwd_S', sinkFor(sink.url, 'S'))
    const a = await startChild('A', { storage, instanceId: 'fwd_closed_A', sink: sinkFor(sink.url, 'A') })
    const acked = new Set<string>()
    for (let i = 0; i < 5; i++) for (const id of await post(a.url, 'closed', 3)) acked.add(id)
    expect(acked.size).toBe(15)
    await waitFor(() => sink.sentBy('A').length >= 2, 5000, 'failing deliveries from A')
    const closingAt = Date.now()
    a.proc.stdin.write('CLOSE\n')
    await a.waitForLine((line) => line === 'CLOSED', 0, 15_000)
    await a.closed
    children.delete(a)
    await waitFor(() => sink.missing(acked).length === 0, 8000, "A's leftovers delivered by the live instance")
    await waitFor(async () => (await survivor.stats()).forwarding!.backlog === 0, 5000, 'an empty backlog')
    expect(await survivor.storage!.getKeys('events:o')).toEqual([])
    report.push(`graceful close: the live instance delivered the closed one's ${acked.size} ids ${firstAt(carrying(sink.stored('S'), acked)) - closingAt} ms after it was told to close`)
  })

  it('an instance that stalls past its heartbeat and lease does not deliver again what another instance delivered meanwhile', { timeout: 30_000 }, async () => {
    const storage = redisStorage('stall')
    const sink = await startRecordingSink((from) => (from === 'A' ? { status: 503 } : { status: 200 }))
    const survivor = await startCore(storage, 'fwd_stall_S', sinkFor(sink.url, 'S'))
    const a = await startChild('A', { storage, instanceId: 'fwd_stall_A', sink: sinkFor(sink.url, 'A') })
    const acked = new Set<string>()
    // One batch in the group A retries, then batches queued behind it.
    for (const id of await post(a.url, 'stall', 3)) acked.add(id)
    await waitFor(() => sink.sentBy('A').length >= 1, 5000, 'a failing delivery from A')
    for (let i = 0; i < 4; i++) for (const id of await post(a.url, 'stall', 3)) acked.add(id)
    expect(acked.size).toBe(15)
    await waitFor(() => sink.sentBy('A').length >= 3, 5000, 'failing retries from A')
    expect(sink.sentBy('A').at(-1)!.ids, 'A retries its first group').toHaveLength(3)
    // A freezes (a long GC pause, a stopped container): its heartbeat and its lease go stale.
    a.proc.kill('SIGSTOP')
    const stoppedAt = Date.now()
    try {
      await waitFor(() => sink.missing(acked).length === 0, 8000, "A's batches delivered by the live instance")
      // Settled there: out of the outbox, leases released.
      await waitFor(async () => (await survivor.stats()).forwarding!.backlog === 0, 5000, "the live instance's backlog empty")
    } finally {
      sink.set(() => ({ status: 200 }))
      a.proc.kill('SIGCONT')
    }
    const resumedAt = Date.now()
    await waitFor(async () => (await a.state()).backlog === 0, 5000, "A's backlog empty after it resumed")
    await waitFor(async () => (await survivor.stats()).forwarding!.backlog === 0, 5000, "the live instance's backlog empty")
    await sleep(HEARTBEAT_MS * 2)
    const again = carrying(sink.stored('A'), acked)
    const duplicates = sink.duplicates()
    report.push(
      `stall: the live instance delivered the frozen one's ${acked.size} ids ${firstAt(carrying(sink.stored('S'), acked)) - stoppedAt} ms after the freeze; ` +
        `after resuming ${resumedAt - stoppedAt} ms later, A sent ${again.length} requests with them again; duplicates: ${duplicates.length}${duplicates.length ? ` [${duplicates.slice(0, 6).map((d) => `${d} by ${sink.trail(d.split('×')[0]!)}`).join(' ')}]` : ''}`,
    )
    expect(sink.overlaps).toEqual([])
    expect(sink.repeats).toEqual([])
    expect(again.map((d) => d.ids), 'batches A delivered again after another instance had').toEqual([])
    expect(await survivor.storage!.getKeys('events:o')).toEqual([])
  })

  it("a live instance delivers a dead instance's batches that another dead instance had adopted", { timeout: 30_000 }, async () => {
    const storage = redisStorage('chain')
    // C's and A's deliveries fail; the survivor's succeed. The survivor counts an instance dead only
    // after 3 s (its lease), A after 1 s: so A, not the survivor, adopts C's outbox when C dies.
    const sink = await startRecordingSink((from) => (from === 'S' ? { status: 200 } : { status: 503 }))
    const survivor = await startCore(storage, 'fwd_chain_S', sinkFor(sink.url, 'S', { leaseMs: 3000 }))
    const [a, c] = await Promise.all([
      startChild('A', { storage, instanceId: 'fwd_chain_A', sink: sinkFor(sink.url, 'A') }),
      startChild('C', { storage, instanceId: 'fwd_chain_C', sink: sinkFor(sink.url, 'C') }),
    ])
    const acked = new Set<string>()
    for (let i = 0; i < 5; i++) for (const id of await post(c.url, 'chain', 3)) acked.add(id)
    expect(acked.size).toBe(15)
    await waitFor(() => sink.sentBy('C').length >= 2, 5000, 'failing deliveries from C')
    await kill(c)
    await waitFor(() => carrying(sink.sentBy('A'), acked).length >= 2, 10_000, "A trying to deliver C's batches")
    expect(sink.stored('S'), 'the survivor did not take part yet').toEqual([])
    const killedAt = await kill(a)
    await waitFor(() => sink.missing(acked).length === 0, 12_000, "C's batches delivered by the survivor")
    await waitFor(async () => (await survivor.stats()).forwarding!.backlog === 0, 5000, 'an empty backlog')
    expect(await survivor.storage!.getKeys('events:o')).toEqual([])
    report.push(`chained adoption: the survivor delivered C's ${acked.size} ids ${firstAt(carrying(sink.stored('S'), acked)) - killedAt} ms after A (their adopter) was killed`)
  })
})
