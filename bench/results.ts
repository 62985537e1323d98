import type { RedisLimit } from './redis-limit'
import type { ClaimsMeasurement } from './claims'
import { claimCeilingText, FS_BASELINE_BATCHES, FS_GOAL_RATIO, type DiskRates } from './disk'
import type { MachineInfo } from './machine'
import type { ProfileSummary } from './profile'
import type { GetTiming } from './load'
import type { MemorySample } from './protocol'
import type { RedisActivity } from './redis-keys'
import { linearFit, spread, type Spread } from './summary'
import { bareOf, handOf, keepingOf, targets, type Target } from './targets'

/** The two request bodies. */
export type BodyKind = 'batch' | 'single'

/** One measured load run: one target, one body, one repetition. */
export interface IngestSample {
  round: number
  target: string
  body: BodyKind
  /** 2xx responses per second. */
  rps: number
  /** Events accepted per second (rps × events per body). */
  eps: number
  /** ms */
  p50: number
  p99: number
  /** Server process CPU (user + system) over the run, % of one core. */
  cpuPct: number
  /** Server CPU (user + system) over the run per 2xx response, µs. */
  cpuUsPerRequest?: number
  /** Minor page faults of the server over the run per 2xx response. */
  faultsPerRequest?: number
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  /** Counted by the server during the run. */
  accepted: number
  duplicates: number
  rejected: number
  /** No error, no non-2xx, no duplicate, no rejected event. */
  valid: boolean
  /** Redis targets on the bench's own redis-server: what Redis did over the run. */
  redis?: RedisActivity
}

/** Stats and schema latency at one store size. */
export interface StatsTiming {
  driver: 'memory' | 'redis'
  stored: number
  /** ms to load the events added for this size through `ingest.ingest()`. */
  loadMs: number
  stats: GetTiming
  schema: GetTiming
  heapUsedMB: number
}

/** A memory sample with its time from the start of the soak's load, in seconds. */
export type SoakSample = MemorySample & { t: number }

/** One soak run. */
export interface SoakResult {
  driver: 'memory' | 'redis' | 'fs'
  seconds: number
  rps: number
  /** The pace asked of autocannon, requests/s (unset: as fast as the server goes). */
  pacedRps?: number
  /** Events stored during the measured load. */
  events: number
  /** Taken with the load paused, after a full GC, before and after the load. */
  before: MemorySample
  after: MemorySample
  /** Taken under load, each after a full GC. */
  samples: SoakSample[]
}

/** Everything a run measured; written as JSON next to the report. */
export type ProfiledRun = ProfileSummary & { file: string; target?: string; body?: 'batch' | 'single' }

export interface BenchResults {
  startedAt: string
  finishedAt: string
  wallSeconds: number
  quick: boolean
  settings: Record<string, unknown>
  machine: MachineInfo
  bodies: Record<BodyKind, { events: number; bytes: number }>
  ingest: IngestSample[]
  stats: StatsTiming[]
  soak: SoakResult[]
  /** `target`: the id profiled (older results lack it: h3); `body`: the load (older: batch). */
  profile?: ProfiledRun
  /** One profile per body profiled (older results have `profile` only). */
  profiles?: ProfiledRun[]
  notes: string[]
  /** The disk's own rates, measured when the fs target ran (see bench/disk.ts). */
  disk?: DiskRates
  /** The Redis server's limit for the batch script, one per repetition (see bench/redis-limit.ts). */
  redisLimits?: RedisLimit[]
  /** The claim table against a Map doing its job, in-process (see bench/claims.ts). */
  claims?: ClaimsMeasurement[]
}

/** Per target and body: medians with ranges over the repetitions. */
export interface IngestRow {
  target: Target
  body: BodyKind
  rps: Spread
  eps: Spread
  p50: Spread
  p99: Spread
  cpuPct: Spread
  cpuUsPerRequest?: Spread
  faultsPerRequest?: Spread
  /** Ours over bare node, paired per repetition. */
  vsNode?: Spread
  /** Ours over the same framework's bare route, paired per repetition. */
  vsBare?: Spread
  /** Ours over bare node keeping every body (`node-keep`), paired per repetition. */
  vsKeep?: Spread
  /** Ours over the same framework's bare route keeping every body, paired per repetition. */
  vsBareKeeping?: Spread
  /** Ours over the same framework's hand-written route on the same storage, paired per repetition. */
  vsHand?: Spread
  /** Redis targets: commands, socket reads (round trips) and Redis server µs per 2xx response. */
  redis?: { commands: Spread; reads: Spread; usec: Spread; calls: Record<string, number> }
  invalid: number
}

function pairedRatios(samples: IngestSample[], target: string, baseline: string, body: BodyKind): number[] {
  const ratios: number[] = []
  for (const sample of samples) {
    if (sample.target !== target || sample.body !== body) continue
    const base = samples.find((s) => s.target === baseline && s.body === body && s.round === sample.round)
    if (base && base.rps > 0) ratios.push(sample.rps / base.rps)
  }
  return ratios
}

/** The spread of a field older results may lack. */
function optionalSpread(values: (number | undefined)[]): Spread | undefined {
  const known = values.filter((v): v is number => v !== undefined && Number.isFinite(v))
  return known.length > 0 ? spread(known) : undefined
}

export function ingestRows(results: BenchResults): IngestRow[] {
  const rows: IngestRow[] = []
  for (const body of ['batch', 'single'] as const) {
    for (const target of targets) {
      const mine = results.ingest.filter((s) => s.target === target.id && s.body === body)
      if (mine.length === 0) continue
      const row: IngestRow = {
        target,
        body,
        rps: spread(mine.map((s) => s.rps)),
        eps: spread(mine.map((s) => s.eps)),
        p50: spread(mine.map((s) => s.p50)),
        p99: spread(mine.map((s) => s.p99)),
        cpuPct: spread(mine.map((s) => s.cpuPct)),
        cpuUsPerRequest: optionalSpread(mine.map((s) => s.cpuUsPerRequest)),
        faultsPerRequest: optionalSpread(mine.map((s) => s.faultsPerRequest)),
        invalid: mine.filter((s) => !s.valid).length,
      }
      if (target.id !== 'node') row.vsNode = spread(pairedRatios(results.ingest, target.id, 'node', body))
      if (target.kind === 'ours') row.vsBare = spread(pairedRatios(results.ingest, target.id, bareOf(target).id, body))
      if (target.kind === 'ours') row.vsKeep = optionalSpread(pairedRatios(results.ingest, target.id, 'node-keep', body))
      if (target.kind === 'ours') row.vsBareKeeping = optionalSpread(pairedRatios(results.ingest, target.id, keepingOf(target).id, body))
      const counted = mine.filter((s) => s.redis && s.ok > 0)
      if (counted.length > 0) {
        const calls: Record<string, number> = {}
        const ok = counted.reduce((sum, s) => sum + s.ok, 0)
        for (const s of counted) for (const [name, n] of Object.entries(s.redis!.calls)) calls[name] = (calls[name] ?? 0) + n
        for (const name of Object.keys(calls)) calls[name] = calls[name]! / ok
        row.redis = {
          commands: spread(counted.map((s) => Object.values(s.redis!.calls).reduce((a, b) => a + b, 0) / s.ok)),
          reads: spread(counted.map((s) => s.redis!.reads / s.ok)),
          usec: spread(counted.map((s) => s.redis!.usec / s.ok)),
          calls,
        }
      }
      const hand = target.kind === 'ours' ? handOf(target) : undefined
      if (hand) row.vsHand = optionalSpread(pairedRatios(results.ingest, target.id, hand.id, body))
      rows.push(row)
    }
  }
  return rows
}

/** The soak's heap trend and what it means. */
export interface SoakAnalysis {
  driver: SoakResult['driver']
  minutes: number
  events: number
  /** Linear fit of heapUsed after GC under load, MB per minute. */
  heapSlopeMBPerMin: number
  rssSlopeMBPerMin: number
  r2: number
  /** (after − before) heapUsed, both quiescent after GC, MB. */
  heapGrowthMB: number
  rssGrowthMB: number
  /** Quiescent heap growth per stored event, bytes. */
  heapBytesPerEvent: number
  /** Memory driver: growth of the stored strings per event, bytes. */
  dataBytesPerEvent?: number
  flat: boolean
  verdict: string
}

/** Growth below this many MB over a soak is within the noise of in-flight requests. */
const NOISE_MB = 2
/** More than this many retained bytes per stored event is a leak (a dedupe set alone would keep about 100). */
const LEAK_BYTES_PER_EVENT = 5

export function analyseSoak(soak: SoakResult): SoakAnalysis {
  const MB = 2 ** 20
  // The first fifth is warm-up (JIT, pools, the first stats buckets): fit the rest.
  const steady = soak.samples.filter((s) => s.t >= soak.seconds * 0.2)
  const used = steady.length >= 3 ? steady : soak.samples
  const minutes = used.map((s) => s.t / 60)
  const heap = linearFit(minutes, used.map((s) => s.heapUsed / MB))
  const rss = linearFit(minutes, used.map((s) => s.rss / MB))
  const heapGrowth = soak.after.heapUsed - soak.before.heapUsed
  const events = Math.max(1, soak.after.events - soak.before.events)
  const perEvent = heapGrowth / events
  const dataPerEvent = soak.after.dataBytes !== undefined && soak.before.dataBytes !== undefined ? (soak.after.dataBytes - soak.before.dataBytes) / events : undefined
  let flat: boolean
  let verdict: string
  if (soak.driver === 'memory') {
    flat = false
    const share = dataPerEvent ? `; the stored records alone are ${dataPerEvent.toFixed(0)} B/event` : ''
    const rssPerEvent = (soak.after.rss - soak.before.rss) / events
    verdict = `grows by design: the memory driver keeps every batch record (as bytes, outside the JS heap) and dedupe claim (a typed-array table plus each batch's ids on the heap): ${perEvent.toFixed(0)} B of heap and ${rssPerEvent.toFixed(0)} B of RSS per stored event${share}. A leak would show in the Redis or fs soak, where the data is outside the process`
  } else {
    flat = heapGrowth / MB < NOISE_MB || perEvent < LEAK_BYTES_PER_EVENT
    verdict = flat
      ? `flat: ${(heapGrowth / MB).toFixed(1)} MB over ${soak.events.toLocaleString('en-US')} events (${perEvent.toFixed(2)} B/event); the data lives in ${soak.driver === 'redis' ? 'Redis' : 'files'}`
      : `grows: ${perEvent.toFixed(1)} B retained per event with the data outside the heap — a leak`
  }
  return {
    driver: soak.driver,
    minutes: soak.seconds / 60,
    events: soak.events,
    heapSlopeMBPerMin: heap.slope,
    rssSlopeMBPerMin: rss.slope,
    r2: heap.r2,
    heapGrowthMB: heapGrowth / MB,
    rssGrowthMB: (soak.after.rss - soak.before.rss) / MB,
    heapBytesPerEvent: perEvent,
    dataBytesPerEvent: dataPerEvent,
    flat,
    verdict,
  }
}

/** One goal, checked against this run. */
export interface TargetCheck {
  what: string
  goal: string
  measured: string
  met: boolean | undefined
  /** How far off, when missed. */
  shortfall?: string
  /** A throughput goal (a ratio of two servers in the same run), as opposed to a latency or memory one. */
  throughput?: boolean
  /** Reported beside the goals, with no threshold. */
  info?: boolean
  /** The body and storage the goal is measured on (the profile of that load names what it blames). */
  body?: BodyKind
  storage?: 'memory' | 'redis' | 'fs' | 'postgres'
}

const fmtRatio = (s: Spread | undefined) => (!s || s.n === 0 ? 'n/a' : s.n === 1 ? s.median.toFixed(2) : `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`)
const bodyName = { batch: 'batch of 50', single: 'one event' } as const
const perEvent = { batch: 50, single: 1 } as const

export function checkTargets(results: BenchResults, rows: IngestRow[], soaks: SoakAnalysis[]): TargetCheck[] {
  const checks: TargetCheck[] = []
  const row = (id: string, body: BodyKind) => rows.find((r) => r.body === body && r.target.id === id)
  const cpu = (r: IngestRow | undefined, body: BodyKind) => (r?.cpuUsPerRequest ? `${(r.cpuUsPerRequest.median / perEvent[body]).toFixed(1)}` : 'n/a')
  const ratioCheck = (what: string, spreadOf: Spread | undefined, goal: number, body: BodyKind, storage: TargetCheck['storage'], note = '') => {
    const ok = spreadOf && spreadOf.n > 0 ? spreadOf.median >= goal : undefined
    checks.push({
      what,
      goal: `≥ ${goal.toFixed(2)}`,
      measured: `${fmtRatio(spreadOf)}${note}`,
      met: ok,
      shortfall: ok === false ? `${((1 - spreadOf!.median / goal) * 100).toFixed(0)}% below the goal (${spreadOf!.median.toFixed(2)} vs ${goal.toFixed(2)})` : undefined,
      throughput: true,
      body,
      storage,
    })
  }
  // event-ingest mounted in each framework against that framework's hand-written route, per storage and body.
  for (const ours of targets.filter((t) => t.kind === 'ours' && !t.machine)) {
    const hand = handOf(ours)
    if (!hand) continue
    for (const body of ['batch', 'single'] as const) {
      const mine = row(ours.id, body)
      const theirs = row(hand.id, body)
      if (!mine && !theirs) continue
      ratioCheck(`${ours.label} / ${hand.label} (${bodyName[body]})`, mine?.vsHand, 1, body, ours.storage as TargetCheck['storage'], `; server CPU µs per event ${cpu(mine, body)} vs ${cpu(theirs, body)}`)
    }
  }
  // One-event requests: the h3 mount against the h3 route keeping every body.
  const h3Single = row('h3', 'single')
  if (h3Single) ratioCheck('h3 + event-ingest (memory) / h3 bare route keeping every body (one event)', h3Single.vsBareKeeping, 0.8, 'single', 'memory')
  // Memory mounts against their framework's keeping route (the batch body; the one-event body of h3 is above).
  for (const id of ['h3', 'express', 'fastify', 'koa']) {
    const mine = row(id, 'batch')
    if (mine) ratioCheck(`${mine.target.label} / ${keepingOf(mine.target).label} (batch of 50)`, mine.vsBareKeeping, 0.8, 'batch', 'memory')
  }
  // Redis: one round trip per batch, and the share of what the Redis server itself can take.
  for (const ours of targets.filter((t) => t.kind === 'ours' && t.storage === 'redis')) {
    const mine = row(ours.id, 'batch')
    if (!mine?.redis) continue
    const reads = mine.redis.reads.median
    const met = reads <= 1.05
    checks.push({
      what: `${ours.label}: Redis round trips per batch of 50 (socket reads on the bench's own redis-server)`,
      goal: '1',
      measured: `${reads.toFixed(2)} round trips, ${mine.redis.commands.median.toFixed(2)} commands per batch (${Object.entries(mine.redis.calls).map(([name, n]) => `${name} ${n.toFixed(2)}`).join(', ')})`,
      met,
      shortfall: met ? undefined : `${reads.toFixed(2)} round trips per batch`,
      body: 'batch',
      storage: 'redis',
    })
    // The limit: the same script driven by a pipelined client in the same run (bench/redis-limit.ts);
    // beside it, the Redis main thread's CPU per batch under this target's own load.
    const limit = spread((results.redisLimits ?? []).map((l) => l.batchesPerSecond))
    const cpuBound = mine.redis.usec.median > 0 ? 1e6 / mine.redis.usec.median : Number.NaN
    const measuredLimit = limit.n > 0
      ? `${(mine.rps.median / limit.median).toFixed(2)}: ${Math.round(mine.rps.median).toLocaleString('en-US')} batches/s of the ${Math.round(limit.median).toLocaleString('en-US')} the Redis server took of the same script from a pipelined client (${Math.round(limit.min).toLocaleString('en-US')}–${Math.round(limit.max).toLocaleString('en-US')})`
      : 'n/a (no pipelined run)'
    checks.push({
      what: `${ours.label} / the Redis server's limit for the same commands (batch of 50)`,
      goal: 'reported',
      measured: `${measuredLimit}; under this target, Redis main-thread CPU ${mine.redis.usec.median.toFixed(0)} µs per batch (INFO cpu), ${Math.round(cpuBound).toLocaleString('en-US')} batches/s at 100%`,
      met: undefined,
      info: true,
    })
  }
  // The memory driver's claim table against the simpler structure it would be replaced by.
  for (const m of results.claims ?? []) {
    checks.push({
      what: `memory dedupe claims: claim table / a \`Map\` doing the same (claim ${m.batch} fresh ids, forget the oldest batch; ${m.held.toLocaleString('en-US')} claims held, in-process)`,
      goal: 'reported',
      measured: `${(m.table.median / m.map.median).toFixed(2)} of the Map's time: ${m.table.median.toFixed(1)} µs (${m.table.min.toFixed(1)}–${m.table.max.toFixed(1)}) vs ${m.map.median.toFixed(1)} µs (${m.map.min.toFixed(1)}–${m.map.max.toFixed(1)}) per batch; heap kept ${m.tableHeapMB.toFixed(1)} vs ${m.mapHeapMB.toFixed(1)} MB`,
      met: undefined,
      info: true,
    })
  }
  // fs: against the earlier fs rate, with the disk's own rates of this run beside it.
  const fs = row('h3-fs', 'batch')
  if (fs) {
    const goal = FS_GOAL_RATIO * FS_BASELINE_BATCHES
    const met = fs.rps.median >= goal
    const claims = claimCeilingText(results.disk)
    const disk = results.disk ? `; the disk alone: ${Math.round(results.disk.appendFsyncPerSecond)} append+fsync/s, ${Math.round(results.disk.writeRenamePerSecond)} write+rename+directory fsync of 16 KB/s${claims ? `; the driver's claims alone: ${claims}` : ''}` : ''
    checks.push({
      what: `h3 + event-ingest (fs), 32 connections, batch of 50 / ${FS_BASELINE_BATCHES} batches/s measured earlier`,
      goal: `≥ ${FS_GOAL_RATIO.toFixed(2)}`,
      measured: `${(fs.rps.median / FS_BASELINE_BATCHES).toFixed(2)} (${Math.round(fs.rps.median)} batches/s${disk})`,
      met,
      shortfall: met ? undefined : `${Math.round(fs.rps.median)} of ${goal} batches/s`,
      body: 'batch',
      storage: 'fs',
      throughput: true,
    })
  }
  for (const driver of ['memory', 'redis'] as const) {
    const timings = results.stats.filter((s) => s.driver === driver).sort((a, b) => a.stored - b.stored)
    if (timings.length < 2) continue
    const small = timings[0]!
    const large = timings[timings.length - 1]!
    const ratio = large.stats.p50 / small.stats.p50
    const met = ratio <= 2
    checks.push({
      what: `stats latency (${driver}) at ${large.stored.toLocaleString('en-US')} vs ${small.stored.toLocaleString('en-US')} events`,
      goal: '≤ 2×',
      measured: `${ratio.toFixed(2)}× (p50 ${large.stats.p50.toFixed(2)} ms vs ${small.stats.p50.toFixed(2)} ms)`,
      met,
      shortfall: met ? undefined : `${ratio.toFixed(1)}× instead of ≤ 2×`,
    })
  }
  for (const soak of soaks.filter((s) => s.driver !== 'memory')) {
    checks.push({
      what: `heap flat over ${soak.minutes.toFixed(1)} min of ingest (${soak.driver})`,
      goal: `< ${LEAK_BYTES_PER_EVENT} B/event or < ${NOISE_MB} MB`,
      measured: `${soak.heapGrowthMB.toFixed(1)} MB, ${soak.heapBytesPerEvent.toFixed(2)} B/event, slope ${soak.heapSlopeMBPerMin.toFixed(2)} MB/min`,
      met: soak.flat,
      shortfall: soak.flat ? undefined : soak.verdict,
    })
  }
  return checks
}
