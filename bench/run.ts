/**
 * `npm run bench`: ingest throughput of event-ingest in each framework against bare baselines, stats
 * and schema latency against store size, heap over a long ingest run, and a CPU profile of the
 * ingest path. Every server runs in its own process on loopback; autocannon drives it from here.
 * Writes bench/RESULTS.md (or --out) and raw JSON plus the profile to bench/.out (or --artifacts).
 *
 *   npm run bench                 # full run (about 25 minutes on 2 cores)
 *   npm run bench -- --quick      # smoke run (well under a minute)
 *   npm run bench -- --machine    # with the machine experiments (page-fault cost, malloc on huge pages)
 *   npm run bench -- --help
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createEventModel } from '../src/index'
import { createBodyFactory } from './events'
import { drive, timeGets } from './load'
import { currentLoad, machineInfo, measurePageFault } from './machine'
import { parseOptions, type BenchOptions } from './options'
import { buildForBench, removeBenchBuild } from './build'
import { measureClaims } from './claims'
import { measureRedisLimit } from './redis-limit'
import { summariseProfile } from './profile'
import type { ServerConfig } from './protocol'
import { benchDatabaseUrl, dropBenchSchema } from './postgres-schemas'
import Redis from 'ioredis'
import { deleteRedisPrefix, redisActivityBetween, redisCounters, redisVersion } from './redis-keys'
import { startOwnRedis, type OwnRedis } from './redis-server'
import { measureDisk } from './disk'
import { renderReport } from './report'
import type { BenchResults, BodyKind, ProfiledRun, IngestSample, SoakResult, SoakSample } from './results'
import { startServerProcess, type ServerProcess, type StartOptions } from './server-process'
import { INGEST_PATH, targets } from './targets'

const root = fileURLToPath(new URL('..', import.meta.url))
const ADMIN_TOKEN = 'bench-admin-token'
const eventsPerBody: Record<BodyKind, number> = { batch: 50, single: 1 }

const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
const live = new Set<ServerProcess>()
const redisPrefixes = new Set<string>()
const postgresSchemas = new Set<string>()
const tempDirs = new Set<string>()
let redisUrl = ''
// The redis-server this run started, when no --redis-url was given.
let ownRedis: OwnRedis | undefined
// A connection that reads the own server's counters around each Redis run.
let redisMonitor: Redis | undefined
// The build of the package the servers load (see buildForBench).
let buildDir = ''

const began = performance.now()
const log = (line: string) => process.stderr.write(`[bench +${((performance.now() - began) / 1000).toFixed(1)}s] ${line}\n`)
const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a')
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts a server for a target with its own storage (temp dir or Redis prefix); `release()` stops it and removes that storage. */
async function startTarget(targetId: string, extra: Partial<ServerConfig> = {}, options: StartOptions = {}) {
  const target = targets.find((t) => t.id === targetId)!
  const tag = `${runId}${randomBytes(2).toString('hex')}`
  const config: ServerConfig = { target: targetId, tag, adminToken: ADMIN_TOKEN, buildDir, ...extra }
  if (target.storage === 'redis') {
    config.redisUrl = redisUrl
    config.redisBase = `ei-bench-${tag}`
    redisPrefixes.add(config.redisBase)
  }
  if (target.storage === 'postgres') {
    config.postgresUrl = benchDatabaseUrl
    config.postgresSchema = `ei_bench_${tag}`.toLowerCase().replace(/[^a-z0-9_]/g, '_')
    postgresSchemas.add(config.postgresSchema)
  }
  if (target.storage === 'fs') {
    config.fsDir = mkdtempSync(join(tmpdir(), 'ei-bench-fs-'))
    tempDirs.add(config.fsDir)
  }
  const server = await startServerProcess(config, options)
  live.add(server)
  return {
    server,
    async release() {
      await server.stop()
      live.delete(server)
      if (config.redisBase) {
        await deleteRedisPrefix(redisUrl, config.redisBase)
        redisPrefixes.delete(config.redisBase)
      }
      if (config.postgresSchema) {
        await dropBenchSchema(benchDatabaseUrl, config.postgresSchema)
        postgresSchemas.delete(config.postgresSchema)
      }
      if (config.fsDir) {
        rmSync(config.fsDir, { recursive: true, force: true })
        tempDirs.delete(config.fsDir)
      }
    },
  }
}

async function cleanUp(): Promise<void> {
  await Promise.allSettled([...live].map((server) => server.stop(5000)))
  for (const prefix of redisPrefixes) await deleteRedisPrefix(redisUrl, prefix).catch(() => {})
  for (const schema of postgresSchemas) await dropBenchSchema(benchDatabaseUrl, schema).catch(() => {})
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
}

/** Everything a run leaves, its build included: on the way out. */
async function cleanUpAll(): Promise<void> {
  await cleanUp()
  redisMonitor?.disconnect()
  redisMonitor = undefined
  await ownRedis?.stop()
  ownRedis = undefined
  if (buildDir) removeBenchBuild(buildDir)
}

/** Phase 1: every target, both bodies, repetitions interleaved (A B C A B C ...), a fresh process per target and repetition. */
async function ingestPhase(options: BenchOptions, results: BenchResults): Promise<void> {
  const chosen = targets.filter((t) => options.targets.includes(t.id))
  for (let round = 1; round <= options.reps; round++) {
    if (chosen.some((t) => t.kind === 'ours' && t.storage === 'redis')) await redisLimitRun(options, results)
    for (const target of chosen) {
      const { server, release } = await startTarget(target.id)
      try {
        if (options.warmup > 0) {
          for (const body of ['batch', 'single'] as const) {
            await drive({ url: server.url, path: INGEST_PATH, bodies: createBodyFactory(eventsPerBody[body]), seconds: options.warmup / 2, connections: options.connections })
          }
        }
        for (const body of ['batch', 'single'] as const) {
          const bodies = createBodyFactory(eventsPerBody[body])
          const countsBefore = await server.counters()
          const counting = target.storage === 'redis' ? redisMonitor : undefined
          const redisBefore = counting ? await redisCounters(counting) : undefined
          const cpuBefore = await server.cpu()
          const run = await drive({ url: server.url, path: INGEST_PATH, bodies, seconds: options.duration, connections: options.connections })
          const cpuAfter = await server.cpu()
          const redisAfter = counting ? await redisCounters(counting) : undefined
          const countsAfter = await server.counters()
          const cpuUs = cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system
          const cpuPct = (cpuUs / 1000 / (cpuAfter.at - cpuBefore.at)) * 100
          const sample: IngestSample = {
            round,
            target: target.id,
            body,
            rps: run.rps,
            eps: run.rps * eventsPerBody[body],
            p50: run.p50,
            p99: run.p99,
            cpuPct,
            cpuUsPerRequest: run.ok > 0 ? cpuUs / run.ok : Number.NaN,
            faultsPerRequest: run.ok > 0 ? (cpuAfter.minorFaults - cpuBefore.minorFaults) / run.ok : Number.NaN,
            ok: run.ok,
            non2xx: run.non2xx,
            errors: run.errors,
            timeouts: run.timeouts,
            accepted: countsAfter.accepted - countsBefore.accepted,
            duplicates: countsAfter.duplicates - countsBefore.duplicates,
            rejected: countsAfter.rejected - countsBefore.rejected,
            valid: false,
            redis: redisBefore && redisAfter ? redisActivityBetween(redisBefore, redisAfter) : undefined,
          }
          sample.valid = run.ok > 0 && run.non2xx === 0 && run.errors === 0 && sample.duplicates === 0 && sample.rejected === 0 && sample.accepted >= run.ok * eventsPerBody[body]
          results.ingest.push(sample)
          log(`ingest ${round}/${options.reps} ${target.id.padEnd(12)} ${body.padEnd(6)} ${fmt(run.rps).padStart(6)} req/s ${fmt(sample.eps).padStart(7)} ev/s p50 ${fmt(run.p50, 1)} ms p99 ${fmt(run.p99, 1)} ms cpu ${fmt(cpuPct)}%${sample.valid ? '' : ` INVALID (non2xx ${run.non2xx}, errors ${run.errors}, duplicates ${sample.duplicates}, rejected ${sample.rejected})`}`)
        }
      } finally {
        await release()
      }
    }
  }
}

/** The Redis server's own limit for event-ingest's batch script, once per repetition (see bench/redis-limit.ts). */
async function redisLimitRun(options: BenchOptions, results: BenchResults): Promise<void> {
  const base = `ei-bench-limit-${runId}${randomBytes(2).toString('hex')}`
  redisPrefixes.add(base)
  try {
    const limit = await measureRedisLimit(redisUrl, base, options.duration)
    ;(results.redisLimits ??= []).push(limit)
    log(`redis limit: ${fmt(limit.batchesPerSecond)} batches/s of 50 from a pipelined client, Redis CPU ${fmt(limit.cpuUsPerBatch)} µs per batch, ${fmt(limit.commandsPerBatch, 1)} commands`)
  } finally {
    await deleteRedisPrefix(redisUrl, base)
    redisPrefixes.delete(base)
  }
}

/** Phase 2: stats and schema latency as the store grows (events loaded in-process). */
async function statsPhase(options: BenchOptions, results: BenchResults): Promise<void> {
  for (const driver of options.statsDrivers) {
    const { server, release } = await startTarget(driver === 'redis' ? 'h3-redis' : 'h3')
    try {
      let previous = 0
      for (const size of options.statsSizes) {
        const loaded = await server.load(size, 1000)
        const headers = { authorization: `Bearer ${ADMIN_TOKEN}` }
        const stats = await timeGets(`${server.url}/admin/events/stats`, headers, options.statsRequests)
        const schema = await timeGets(`${server.url}/events/schema`, {}, options.statsRequests)
        const memory = await server.memory({ gc: false })
        results.stats.push({ driver, stored: loaded.stored, loadMs: loaded.ms, stats, schema, heapUsedMB: memory.heapUsed / 2 ** 20 })
        log(`stats ${driver} ${fmt(loaded.stored)} events (+${fmt(loaded.stored - previous)} in ${fmt(loaded.ms / 1000, 1)} s): stats p50 ${fmt(stats.p50, 2)} ms p99 ${fmt(stats.p99, 2)} ms, schema p50 ${fmt(schema.p50, 2)} ms`)
        previous = loaded.stored
      }
    } finally {
      await release()
    }
  }
}

/** Phase 3: heap and RSS over a long ingest run, sampled after a full GC. */
async function soakPhase(options: BenchOptions, results: BenchResults): Promise<void> {
  const targetOf = { memory: 'h3', redis: 'h3-redis', fs: 'h3-fs' } as const
  // Paced so the memory driver's heap stays bounded (it keeps every event); every driver gets the same pace.
  const overallRate = options.soakEvents > 0 ? Math.max(1, Math.round(options.soakEvents / 50 / options.soakSeconds)) : undefined
  for (const driver of options.soakDrivers) {
    const { server, release } = await startTarget(targetOf[driver], {}, { nodeArgs: ['--expose-gc', '--max-old-space-size=6144'] })
    try {
      const dataBytes = driver === 'memory'
      const warmSeconds = Math.max(options.warmup, Math.min(10, options.soakSeconds * 0.1))
      await drive({ url: server.url, path: INGEST_PATH, bodies: createBodyFactory(50), seconds: warmSeconds, connections: options.connections, overallRate })
      const before = await server.memory({ gc: true, dataBytes })
      const samples: SoakSample[] = []
      const started = performance.timeOrigin + performance.now()
      let running = true
      const load = drive({ url: server.url, path: INGEST_PATH, bodies: createBodyFactory(50), seconds: options.soakSeconds, connections: options.connections, overallRate }).finally(() => {
        running = false
      })
      const sampler = (async () => {
        while (running) {
          await sleep(options.soakSampleSeconds * 1000)
          if (!running) break
          const sample = await server.memory({ gc: true, dataBytes })
          samples.push({ ...sample, t: (sample.at - started) / 1000 })
        }
      })()
      const run = await load
      await sampler
      const after = await server.memory({ gc: true, dataBytes })
      const soak: SoakResult = { driver, seconds: run.seconds, rps: run.rps, pacedRps: overallRate, events: after.events - before.events, before, after, samples }
      results.soak.push(soak)
      log(`soak ${driver}: ${fmt(run.seconds, 0)} s, ${fmt(soak.events)} events, heap ${fmt(before.heapUsed / 2 ** 20, 1)} → ${fmt(after.heapUsed / 2 ** 20, 1)} MB, rss ${fmt(before.rss / 2 ** 20)} → ${fmt(after.rss / 2 ** 20)} MB`)
    } finally {
      await release()
    }
  }
}

/** Phase 4: `node --cpu-prof` of each profiled target under its load (see BenchOptions.profiles). */
async function profilePhase(options: BenchOptions, results: BenchResults): Promise<void> {
  const dir = join(options.artifacts, 'profile')
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  results.profiles = []
  for (const { target, body } of options.profiles) results.profiles.push(await profileOnce(options, dir, target, body))
  results.profile = results.profiles[0]
}

async function profileOnce(options: BenchOptions, dir: string, profiled: string, body: 'batch' | 'single'): Promise<ProfiledRun> {
  const events = eventsPerBody[body]
  const maps = join(dir, `${profiled}-${body}.sourcemaps.json`)
  // Default profile names: one file per thread (tsx's loader hooks run on a worker), `CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`.
  const { server, release } = await startTarget(profiled, { sourceMapsOut: maps }, { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir] })
  const pid = server.pid
  let window: { fromUs: number; toUs: number } | undefined
  try {
    if (options.warmup > 0) await drive({ url: server.url, path: INGEST_PATH, bodies: createBodyFactory(events), seconds: options.warmup, connections: options.connections })
    const from = await server.cpu()
    await drive({ url: server.url, path: INGEST_PATH, bodies: createBodyFactory(events), seconds: options.profileSeconds, connections: options.connections })
    const to = await server.cpu()
    window = { fromUs: from.monoUs, toUs: to.monoUs }
  } finally {
    await release()
  }
  const mainThread = () => readdirSync(dir).find((name) => name.startsWith('CPU.') && name.endsWith('.cpuprofile') && name.split('.')[3] === String(pid) && name.split('.')[4] === '0')
  for (let i = 0; i < 50 && !mainThread(); i++) await sleep(100)
  const found = mainThread()
  if (!found) throw new Error(`the main-thread CPU profile of ${pid} was not written to ${dir}`)
  const file = join(dir, `${profiled}-${body}.cpuprofile`)
  renameSync(join(dir, found), file)
  log(`profile (${body}): ${file}`)
  return { ...summariseProfile(file, root, { sourceMapsPath: maps, window }), file, target: profiled, body }
}

/**
 * Waits, at most `seconds`, for the 1-minute load average to fall to `idle`; resolves the seconds
 * waited. The average lags: after a test run it takes a minute or two to come down.
 */
async function settle(seconds: number, idle: number): Promise<number> {
  const start = Date.now()
  if (seconds <= 0 || currentLoad() <= idle) return 0
  log(`waiting up to ${seconds} s for the load average (${currentLoad().toFixed(2)}) to fall to ${idle.toFixed(2)}`)
  while (currentLoad() > idle && Date.now() - start < seconds * 1000) await new Promise((resolve) => setTimeout(resolve, 5000))
  return (Date.now() - start) / 1000
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2))
  if (options.render) {
    writeFileSync(options.out, renderReport(JSON.parse(readFileSync(options.render, 'utf8')) as BenchResults))
    log(`rendered ${options.render} to ${options.out}`)
    return
  }
  mkdirSync(options.artifacts, { recursive: true })
  mkdirSync(dirname(options.out), { recursive: true })
  // The load average a run counts as idle, waits for, and flags when it starts above.
  const idleLoad = cpus().length * 0.25
  const waited = await settle(options.settleSeconds, idleLoad)
  const machine = machineInfo()
  // A machine experiment: what a page fault costs here, for the report's account of kept memory.
  if (options.machine) machine.pageFaultUs = measurePageFault()
  const needsRedis = targets.some((t) => t.storage === 'redis' && options.targets.includes(t.id)) && options.phases.has('ingest')
    || (options.phases.has('stats') && options.statsDrivers.includes('redis'))
    || (options.phases.has('soak') && options.soakDrivers.includes('redis'))
    || (options.phases.has('profile') && options.profileSeconds > 0 && options.profiles.some((p) => targets.find((t) => t.id === p.target)?.storage === 'redis'))
  if (needsRedis) {
    if (options.redisUrl) {
      redisUrl = options.redisUrl
    } else {
      ownRedis = await startOwnRedis()
      redisUrl = ownRedis.url
      machine.redisOwn = true
      // Only on the bench's own server do the counters belong to the run alone.
      redisMonitor = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
      log(`started redis-server at ${redisUrl}`)
    }
    machine.redis = await redisVersion(redisUrl)
  }

  // The bodies must be all valid, or ingest would measure rejection instead of storage.
  const model = createEventModel()
  const bodies = {} as BenchResults['bodies']
  for (const body of ['batch', 'single'] as const) {
    const factory = createBodyFactory(eventsPerBody[body])
    const checked = model.validateBatch(JSON.parse(factory.next().toString()))
    if (checked.rejected.length > 0) throw new Error(`bench body ${body} is not valid: ${JSON.stringify(checked.rejected[0])}`)
    bodies[body] = { events: factory.count, bytes: factory.bytes }
  }

  const started = Date.now()
  const results: BenchResults = {
    startedAt: new Date(started).toISOString(),
    finishedAt: '',
    wallSeconds: 0,
    quick: options.quick,
    settings: {
      machine: options.machine,
      reps: options.reps,
      duration: options.duration,
      warmup: options.warmup,
      connections: options.connections,
      targets: options.targets,
      phases: [...options.phases],
      statsSizes: options.statsSizes,
      statsDrivers: options.statsDrivers,
      statsRequests: options.statsRequests,
      soakSeconds: options.soakSeconds,
      soakSampleSeconds: options.soakSampleSeconds,
      soakDrivers: options.soakDrivers,
      soakEvents: options.soakEvents,
      profileSeconds: options.profileSeconds,
      profiles: options.profiles,
      settleSeconds: options.settleSeconds,
    },
    machine,
    bodies,
    ingest: [],
    stats: [],
    soak: [],
    notes: [],
  }
  if (waited > 0) results.notes.push(`The run waited ${Math.round(waited)} s for the machine to settle (1-minute load average at most ${idleLoad.toFixed(2)}) before it started.`)
  if (machine.loadStart > idleLoad) {
    results.notes.push(`The machine was not idle when the run started (1-minute load average ${machine.loadStart.toFixed(2)} on ${machine.cores} cores): absolute numbers are low and noisy; same-run ratios are less affected.`)
  }
  log(`run ${runId}: ${options.quick ? 'quick' : 'full'}${options.machine ? ', with the machine experiments' : ''}; load average ${machine.loadStart.toFixed(2)} on ${machine.cores} cores`)

  const stop = () => {
    log('interrupted: stopping servers and deleting this run\'s Redis keys')
    cleanUpAll().finally(() => process.exit(130))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)

  const resultsFile = join(options.artifacts, options.quick ? 'results.quick.json' : 'results.json')
  const save = () => {
    machine.loadEnd = currentLoad()
    results.finishedAt = new Date().toISOString()
    results.wallSeconds = (Date.now() - started) / 1000
    writeFileSync(resultsFile, JSON.stringify(results, null, 2))
  }
  // A failed phase is noted and the others still run; results are saved after each phase, so a
  // late failure never loses the earlier measurements.
  const phases: [string, boolean, () => Promise<void>][] = [
    ['ingest', options.phases.has('ingest'), async () => {
      if (options.targets.includes('h3-fs')) {
        results.disk = await measureDisk(options.quick ? 0.5 : 2)
        log(`disk: ${Math.round(results.disk.appendFsyncPerSecond)} append+fsync/s, ${Math.round(results.disk.writeRenamePerSecond)} write+rename+dir-fsync of 16 KB/s, ${Math.round(results.disk.claimBatchesPerSecond ?? 0)} batches of fs claims/s`)
      }
      await ingestPhase(options, results)
    }],
    ['stats', options.phases.has('stats'), () => statsPhase(options, results)],
    ['soak', options.phases.has('soak'), () => soakPhase(options, results)],
    ['profile', options.phases.has('profile') && options.profileSeconds > 0, () => profilePhase(options, results)],
    ['claims', options.phases.has('claims'), async () => {
      results.claims = []
      for (const held of options.quick ? [10_000] : [100_000, 1_500_000]) {
        const m = measureClaims(held, 50, options.quick ? 1000 : 20_000, options.quick ? 1 : 3)
        results.claims.push(m)
        log(`claims at ${held}: table ${m.table.median.toFixed(1)} µs, Map ${m.map.median.toFixed(1)} µs per batch`)
      }
    }],
  ]
  let failed = 0
  try {
    log('building the package (unbuild, no declarations) for the servers to load')
    buildDir = await buildForBench(root, runId)
    for (const [name, enabled, run] of phases) {
      if (!enabled) continue
      try {
        await run()
      } catch (error) {
        failed++
        const message = error instanceof Error ? error.message : String(error)
        log(`phase ${name} failed: ${message}`)
        results.notes.push(`The ${name} phase failed and is incomplete: ${message.split('\n')[0]}`)
        await cleanUp()
      }
      save()
    }
  } finally {
    await cleanUpAll()
  }

  const invalid = results.ingest.filter((s) => !s.valid).length
  if (invalid > 0) results.notes.push(`${invalid} load run(s) had errors, non-2xx answers, duplicates or rejected events; they are counted in the tables but marked.`)
  save()
  writeFileSync(options.out, renderReport(results))
  log(`done in ${fmt(results.wallSeconds)} s: ${options.out} (raw: ${resultsFile})`)
  if (failed > 0) process.exitCode = 1
}

main().catch((error: unknown) => {
  console.error(error)
  cleanUpAll().finally(() => process.exit(1))
})
