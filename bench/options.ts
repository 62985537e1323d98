import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { targets } from './targets'

/** Every setting of a bench run. Flags win over `BENCH_*` environment variables, which win over the defaults. */
export interface BenchOptions {
  /** Smoke mode: one repetition, short runs, small sizes. */
  quick: boolean
  /**
   * Machine experiments too: the cost of a page fault on this machine, timed at the start, and the
   * targets that measure a setting of the machine rather than the code (`machine` in
   * bench/targets.ts: h3 + memory with glibc's malloc on huge pages). @default false
   */
  machine: boolean
  /**
   * Interleaved repetitions of every target. The default keeps `npm run bench` within 12 minutes on
   * a 2-core machine with every target; `--reps 5 --duration 5` is the longer method. @default 2 (quick: 1)
   */
  reps: number
  /** Seconds of each measured load run (per target, per body). @default 3 (quick: 1) */
  duration: number
  /** Seconds of untimed load on each fresh server before measuring. @default 1 (quick: 0.2) */
  warmup: number
  /** autocannon connections. @default 32 (quick: 4) */
  connections: number
  /** Target ids to run (all but the machine experiments by default); ratios need the matching bare routes. */
  targets: string[]
  /** Phases to run. @default all: ingest, stats, soak, profile */
  phases: Set<'ingest' | 'stats' | 'soak' | 'profile' | 'claims'>
  /** Stored-event counts at which stats and schema are timed. @default 1e3, 1e5, 1e6 (quick: 1e3, 1e4) */
  statsSizes: number[]
  /** Drivers of the stats phase. @default memory, redis */
  statsDrivers: ('memory' | 'redis')[]
  /** Timed GETs per route and size. @default 200 (quick: 20) */
  statsRequests: number
  /** Seconds of each soak run. @default 30 (quick: 1) */
  soakSeconds: number
  /** Seconds between memory samples of a soak. @default 5 (quick: 0.2) */
  soakSampleSeconds: number
  /** Storage of each soak run; memory keeps every event on the heap by design. @default redis, memory */
  soakDrivers: ('memory' | 'redis' | 'fs')[]
  /**
   * Events each soak run is paced to store (autocannon's overall rate = this / 50 / seconds), so the
   * memory driver's heap stays bounded; every driver runs at the same pace. 0: unpaced.
   * @default 500_000 (quick: 0)
   */
  soakEvents: number
  /** Seconds of load while profiling. @default 10 (quick: 1) */
  profileSeconds: number
  /**
   * The profiles taken, one each: a target and the body of its load (`batch`: 50 events, `single`:
   * one-event arrays), one per kind of goal the run measures.
   * @default h3 batch, h3 single, h3-redis single, h3-fs batch
   */
  profiles: { target: string; body: 'batch' | 'single' }[]
  /**
   * Longest wait, in seconds, before the run for the machine's 1-minute load average to fall to a
   * quarter of its cores (work just before the run, such as a test run, still weighs on it).
   * @default 30 (quick: 0)
   */
  settleSeconds: number
  /** Redis for the Redis targets; keys go under a unique prefix and are deleted afterwards. */
  /**
   * A Redis to use instead of the bench's own: by default the run starts its own `redis-server` on a
   * free port (no persistence) and stops it at the end, so its command counters are the bench's alone.
   */
  redisUrl?: string
  /** Markdown report. @default bench/RESULTS.md */
  out: string
  /** Raw results (JSON) and the CPU profile. @default bench/.out */
  artifacts: string
  /** Render the report from this results JSON instead of running. */
  render?: string
}

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))

/** Targets that measure a setting of the machine, not the code: run only with `--machine`. */
const machineTargets = targets.filter((t) => t.machine).map((t) => t.id)

const usage = `npm run bench -- [options]
  --quick                 smoke run: 1 repetition, short runs, small sizes
  --machine               machine experiments too: the cost of a page fault here, and ${machineTargets.join(', ')}
  --reps N                interleaved repetitions (default 2; 5 with --duration 5 for the long method)
  --duration S            seconds per measured run (default 3)
  --warmup S              seconds of untimed load per fresh server (default 1)
  --connections N         autocannon connections (default 32)
  --targets a,b           target ids (default all; ${machineTargets.join(', ')} only with --machine):
                          ${targets.map((t) => t.id).join(', ')}
  --phases a,b            ingest, stats, soak, profile, claims (default all)
  --stats-sizes a,b       stored events for stats/schema timing (default 1000,100000,1000000)
  --stats-drivers a,b     memory, redis (default both)
  --stats-requests N      timed GETs per route and size (default 200)
  --soak S                seconds per soak run (default 30)
  --soak-sample S         seconds between heap samples (default 5)
  --soak-drivers a,b      redis, fs, memory (default redis,memory)
  --soak-events N         events each soak is paced to store (default 500000; 0 = as fast as it goes)
  --profile S             seconds of load under --cpu-prof (default 10; 0 skips)
  --profiles id:body,...  profiles taken, one each: a target and its load, batch or single
                          (default h3:batch,h3:single,h3-redis:single,h3-fs:batch)
  --settle S              longest wait for an idle machine before the run (default 30; 0 skips)
  --redis-url URL         a shared Redis (keys under a unique prefix, deleted after); default: the run
                          starts its own redis-server on a free port and stops it at the end
  --out FILE              report path (default bench/RESULTS.md)
  --artifacts DIR         raw JSON and .cpuprofile (default bench/.out)
  --render FILE           only rewrite the report (--out) from a saved results JSON
Every option also reads BENCH_<NAME> from the environment (BENCH_REPS=3, BENCH_QUICK=1...).`

/** Parses argv and the environment into options. */
export function parseOptions(argv: string[], env: Record<string, string | undefined> = process.env): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      machine: { type: 'boolean' },
      reps: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      targets: { type: 'string' },
      phases: { type: 'string' },
      'stats-sizes': { type: 'string' },
      'stats-drivers': { type: 'string' },
      'stats-requests': { type: 'string' },
      soak: { type: 'string' },
      'soak-sample': { type: 'string' },
      'soak-drivers': { type: 'string' },
      'soak-events': { type: 'string' },
      profile: { type: 'string' },
      profiles: { type: 'string' },
      settle: { type: 'string' },
      'redis-url': { type: 'string' },
      out: { type: 'string' },
      render: { type: 'string' },
      artifacts: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  })
  if (values.help) {
    console.log(usage)
    process.exit(0)
  }
  const pick = (name: string): string | undefined => {
    const flag = (values as Record<string, string | boolean | undefined>)[name]
    if (typeof flag === 'string') return flag
    return env[`BENCH_${name.toUpperCase().replace(/-/g, '_')}`]
  }
  const flag = (name: 'quick' | 'machine') => values[name] ?? ['1', 'true', 'yes'].includes((env[`BENCH_${name.toUpperCase()}`] ?? '').toLowerCase())
  const quick = flag('quick')
  const machine = flag('machine')
  const number = (name: string, full: number, short: number, min = 0): number => {
    const raw = pick(name)
    const value = raw === undefined ? (quick ? short : full) : Number(raw)
    if (!Number.isFinite(value) || value < min) throw new TypeError(`--${name}: expected a number >= ${min}, got ${JSON.stringify(raw)}`)
    return value
  }
  const list = <T extends string>(name: string, allowed: readonly T[], fallback: readonly T[]): T[] => {
    const raw = pick(name)
    if (raw === undefined) return [...fallback]
    const items = raw.split(',').map((s) => s.trim()).filter(Boolean)
    for (const item of items) if (!allowed.includes(item as T)) throw new TypeError(`--${name}: ${JSON.stringify(item)} is not one of ${allowed.join(', ')}`)
    return items as T[]
  }
  const profilesOption = (raw: string | undefined): BenchOptions['profiles'] => {
    const items = (raw ?? 'h3:batch,h3:single,h3-redis:single,h3-fs:batch').split(',').map((s) => s.trim()).filter(Boolean)
    return items.map((item) => {
      const [target, body] = item.split(':')
      if (!targets.some((t) => t.id === target) || (body !== 'batch' && body !== 'single')) {
        throw new TypeError(`--profiles: ${JSON.stringify(item)} is not <target>:<batch|single> (targets: ${targets.map((t) => t.id).join(', ')})`)
      }
      return { target: target!, body }
    })
  }
  const sizes = pick('stats-sizes')
  const statsSizes = sizes === undefined ? (quick ? [1_000, 10_000] : [1_000, 100_000, 1_000_000]) : sizes.split(',').map((s) => Number(s.trim()))
  if (statsSizes.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new TypeError(`--stats-sizes: expected positive integers, got ${sizes}`)
  statsSizes.sort((a, b) => a - b)
  const chosenTargets = list('targets', targets.map((t) => t.id), targets.filter((t) => machine || !t.machine).map((t) => t.id))
  const experiments = machine ? [] : chosenTargets.filter((id) => machineTargets.includes(id))
  if (experiments.length > 0) throw new TypeError(`--targets: ${experiments.join(', ')} is a machine experiment: add --machine to run it`)
  return {
    quick,
    machine,
    reps: Math.round(number('reps', 2, 1, 1)),
    // Quick runs still see answers from the slowest target (fs batches, about 10 a second on a slow
    // disk): a few connections, long enough for several to come back.
    duration: number('duration', 3, 1, 0.1),
    warmup: number('warmup', 1, 0.2),
    connections: Math.round(number('connections', 32, 4, 1)),
    targets: chosenTargets,
    phases: new Set(list('phases', ['ingest', 'stats', 'soak', 'profile', 'claims'] as const, ['ingest', 'stats', 'soak', 'profile', 'claims'])),
    statsSizes,
    statsDrivers: list('stats-drivers', ['memory', 'redis'] as const, ['memory', 'redis']),
    statsRequests: Math.round(number('stats-requests', 200, 20, 1)),
    soakSeconds: number('soak', 30, 1, 0.1),
    soakSampleSeconds: number('soak-sample', 5, 0.2, 0.05),
    soakDrivers: list('soak-drivers', ['memory', 'redis', 'fs'] as const, ['redis', 'memory']),
    soakEvents: Math.round(number('soak-events', 500_000, 0)),
    profileSeconds: number('profile', 10, 1),
    profiles: profilesOption(pick('profiles')),
    settleSeconds: number('settle', 30, 0),
    redisUrl: pick('redis-url'),
    out: pick('out') ?? here('./RESULTS.md'),
    artifacts: pick('artifacts') ?? here('./.out'),
    render: pick('render'),
  }
}
