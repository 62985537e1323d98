import { relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { analyseSoak, checkTargets, ingestRows, type BenchResults, type IngestRow, type ProfiledRun, type SoakAnalysis } from './results'
import type { Spread } from './summary'
import { targets } from './targets'
import { claimCeilingText, diskReportLines, FS_BASELINE_BATCHES, FS_GOAL_RATIO } from './disk'

const num = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a')
const range = (s: Spread | undefined, digits = 0) => (s && s.n > 0 ? (s.n === 1 ? num(s.median, digits) : `${num(s.median, digits)} (${num(s.min, digits)}–${num(s.max, digits)})`) : '—')
const pct = (part: number, whole: number) => (whole > 0 ? `${((part / whole) * 100).toFixed(1)}%` : 'n/a')
const root = fileURLToPath(new URL('..', import.meta.url))
/** A path inside the repository as a relative one, so the report reads the same on every machine. */
const shown = (path: string) => (path.startsWith(root) ? relative(root, path).split(sep).join('/') : path)
const code = (text: string) => `\`${text.replace(/`/g, "'")}\``

function ingestTable(rows: IngestRow[], body: 'batch' | 'single'): string[] {
  const lines = [
    '| Target | req/s | events/s | p50 ms | p99 ms | server CPU % | CPU µs / request | page faults / request | ours / bare node | ours / same framework bare | ours / same framework hand-written |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const row of rows.filter((r) => r.body === body)) {
    const mark = row.invalid > 0 ? ` ⚠ ${row.invalid} invalid run(s)` : ''
    lines.push(
      `| ${row.target.label}${mark} | ${range(row.rps)} | ${range(row.eps)} | ${range(row.p50, 1)} | ${range(row.p99, 1)} | ${range(row.cpuPct)} | ${range(row.cpuUsPerRequest)} | ${range(row.faultsPerRequest, 1)} | ${range(row.vsNode, 2)} | ${row.target.kind === 'ours' ? range(row.vsBare, 2) : '—'} | ${row.vsHand ? range(row.vsHand, 2) : '—'} |`,
    )
  }
  return lines
}

/**
 * What keeping the stored data in the server's own memory costs, from the page faults per request
 * of h3 + memory against bare node (batch body), the price of a fault on this machine, and the
 * memory soak's RSS growth per stored event (the pages that must be faulted in).
 */
function keptMemory(rows: IngestRow[], pageFaultUs: number | undefined, memorySoak: SoakAnalysis | undefined): string[] {
  const ours = rows.find((r) => r.body === 'batch' && r.target.id === 'h3')
  const bare = rows.find((r) => r.body === 'batch' && r.target.id === 'node')
  if (!ours?.faultsPerRequest || !bare?.faultsPerRequest || !ours.cpuUsPerRequest || !bare.cpuUsPerRequest) return []
  const faultKnown = pageFaultUs !== undefined && Number.isFinite(pageFaultUs)
  const extraFaults = ours.faultsPerRequest.median - bare.faultsPerRequest.median
  const extraCpu = ours.cpuUsPerRequest.median - bare.cpuUsPerRequest.median
  const growth = memorySoak && memorySoak.events > 0 ? (memorySoak.rssGrowthMB * 2 ** 20) / memorySoak.events : undefined
  const head = `**Memory kept per request (batch of 50).** The memory driver keeps what it stores in the server process: each body as received and its ids for deduplication${growth !== undefined && growth > 0 ? ` (the memory soak above grows by ${num(growth)} B of RSS per stored event, ${num((growth * 50) / 1024, 1)} KiB per batch: ${num((growth * 50) / 4096, 1)} fresh 4 KiB pages, each a page fault)` : ''}. h3 + event-ingest (memory) takes ${num(ours.faultsPerRequest.median, 1)} minor page faults per request, bare node ${num(bare.faultsPerRequest.median, 1)}, which keeps nothing past its ring.`
  const cost = !faultKnown
    ? ' What a fault costs on this machine is timed only with `--machine`.'
    : extraFaults > 0.5
    ? ` At ${num(pageFaultUs, 1)} µs per fault on this machine, that is about ${num(extraFaults * pageFaultUs)} µs per request (the CPU profile charges it to whatever first touches the new memory: Node's copy of the body, the allocator, the claim table) of the ${num(extraCpu)} µs of server CPU per request that event-ingest adds to bare node (${num(ours.cpuUsPerRequest.median)} against ${num(bare.cpuUsPerRequest.median)} µs).`
    : ` No more than bare node here, so keeping costs no fault time in this run (a fault costs ${num(pageFaultUs, 1)} µs on this machine).`
  const keeping = rows.find((r) => r.body === 'batch' && r.target.id === 'node-keep')
  const keepLine = keeping?.faultsPerRequest && keeping.cpuUsPerRequest
    ? ` Bare node keeping every body (\`node-keep\`) takes ${num(keeping.faultsPerRequest.median, 1)} faults and ${num(keeping.cpuUsPerRequest.median)} µs of CPU per request: the part of that cost any store in the process pays.`
    : ''
  const huge = rows.find((r) => r.body === 'batch' && r.target.id === 'h3-hugepages')
  const hugeLine = huge?.faultsPerRequest && huge.cpuUsPerRequest && huge.vsNode
    ? ` The same server with glibc's malloc on transparent huge pages (\`GLIBC_TUNABLES=glibc.malloc.hugetlb=1\`, a setting of the process, not of the code) takes ${num(huge.faultsPerRequest.median, 1)} faults and ${num(huge.cpuUsPerRequest.median)} µs of CPU per request, ${num(huge.vsNode.median, 2)} of bare node.`
    : ''
  return [`${head}${cost}${keepLine}${hugeLine} The Redis and fs targets take page faults too (see the tables), from memory the allocator gives back and takes again rather than from data kept: the Redis soak's heap stays flat.`]
}

/**
 * Each memory-driver mount against the baselines that keep every body they receive: bare node
 * (`node-keep`) and the same framework's bare route (`*-keep`), paired per repetition.
 */
function againstKeeping(rows: IngestRow[]): string[] {
  const ours = rows.filter((r) => r.target.kind === 'ours' && r.target.storage === 'memory' && r.vsKeep && r.vsKeep.n > 0)
  if (ours.length === 0) return []
  const lines = [
    '## Against baselines that keep what they receive',
    '',
    'Each memory-driver target over the bare servers that also keep every body they receive for the life of the process (bare node as the bytes received, each framework\'s bare route as the framework hands the body over), paired per repetition. The `node` and `*-bare` servers keep only a bounded ring, so ratios against them charge event-ingest with the memory that any server storing what it receives must take; these do not.',
    '',
    '| Target | / bare node keeping, batch of 50 | / bare node keeping, one event | / same framework keeping, batch of 50 | / same framework keeping, one event |',
    '| --- | ---: | ---: | ---: | ---: |',
  ]
  for (const target of [...new Set(ours.map((r) => r.target))]) {
    const of = (body: 'batch' | 'single', which: 'vsKeep' | 'vsBareKeeping') => range(ours.find((r) => r.target === target && r.body === body)?.[which], 2)
    lines.push(`| ${target.label} | ${of('batch', 'vsKeep')} | ${of('single', 'vsKeep')} | ${of('batch', 'vsBareKeeping')} | ${of('single', 'vsBareKeeping')} |`)
  }
  return [...lines, '']
}

/** What each Redis target asked of Redis per request, counted on the bench's own redis-server. */
function redisTable(rows: IngestRow[]): string[] {
  const counted = rows.filter((r) => r.redis)
  if (counted.length === 0) return []
  return [
    '## Redis commands and round trips per request',
    '',
    'Deltas of `INFO commandstats` (commands, those a script runs included), `total_reads_processed` (one socket read per round trip a client makes) and the main thread\'s CPU time of `INFO cpu` (user + system: the thread that runs every command and script and serves the client sockets) on the redis-server the run started for itself, around each measured run, per 2xx response; the measuring `INFO` calls are left out.',
    '',
    '| Target | Body | round trips / request | commands / request | Redis CPU µs / request | commands |',
    '| --- | --- | ---: | ---: | ---: | --- |',
    ...counted.map((r) => `| ${r.target.label} | ${r.body === 'batch' ? 'batch of 50' : 'one event'} | ${range(r.redis!.reads, 2)} | ${range(r.redis!.commands, 2)} | ${range(r.redis!.usec, 0)} | ${Object.entries(r.redis!.calls).map(([name, n]) => `${name} ${num(n, 2)}`).join(', ')} |`),
    '',
  ]
}

function profilesOf(results: BenchResults): ProfiledRun[] {
  return results.profiles ?? (results.profile ? [results.profile] : [])
}

function bodyLoad(profile: ProfiledRun): string {
  return (profile.body ?? 'batch') === 'batch' ? 'batch-of-50' : 'one-event'
}

function profileSection(profile: ProfiledRun): string[] {
  const label = targets.find((t) => t.id === (profile.target ?? 'h3'))?.label ?? 'h3 + event-ingest (memory)'
  const busy = profile.busyMs
  const lines: string[] = []
  const owners = Object.entries(profile.byOwner).sort((a, b) => b[1] - a[1])
  const ours = profile.byOwner.ours ?? 0
  const blamed = profile.blame.reduce((sum, entry) => sum + entry.ms, 0)
  lines.push(
    `Profile of the ${label} server under the ${bodyLoad(profile)} load (${code(shown(profile.file))}; ${profile.windowed ? 'the load window only, start-up and warm-up left out' : 'the whole process, start-up included'}: ${num(profile.totalMs)} ms sampled, ${num(busy)} ms busy — percentages are of busy time).`,
    '',
    `Our code (\`src/\`, \`adapters/\`) runs ${pct(ours, busy)} of the busy time itself; with the dependencies and builtins it calls, stacks with our code on them take ${pct(blamed, busy)}. The rest is the framework, Node's HTTP stack, GC and V8 outside our calls. Most of ours: ${profile.blame
      .slice(0, 4)
      .map((entry) => `${code(entry.name)} (${code(entry.location)}) ${pct(entry.ms, busy)}`)
      .join(', ')}. V8 inlines builtins such as \`JSON.parse\` and \`JSON.stringify\` into the function that calls them, so their time shows as that function's self time.`,
    '',
    '**Busy time by owner**',
    '',
    '| Owner | ms | share |',
    '| --- | ---: | ---: |',
    ...owners.map(([owner, ms]) => `| ${ownerName(owner)} | ${num(ms)} | ${pct(ms, busy)} |`),
    '',
    '**Top functions by self time**',
    '',
    '| # | Function | Where | Owner | self ms | share |',
    '| ---: | --- | --- | --- | ---: | ---: |',
    ...profile.top.map((f, i) => {
      const where = f.location === '(native)' && f.calledFrom ? `(native) ← ${f.calledFrom}` : f.location || '—'
      return `| ${i + 1} | ${code(f.name)} | ${code(where)} | ${ownerName(f.owner === 'dep' ? `dep:${f.pkg}` : f.owner)} | ${num(f.selfMs)} | ${pct(f.selfMs, busy)} |`
    }),
    '',
    '**Our functions by the time below them** (each sample counted once, at the innermost function of ours on its stack: its own code plus the dependencies and builtins it called)',
    '',
    '| Function | Where | ms | share | of which |',
    '| --- | --- | ---: | ---: | --- |',
    ...profile.blame.slice(0, 15).map((entry) => {
      const split = Object.entries(entry.byLeaf)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 4)
        .map(([owner, ms]) => `${ownerName(owner)} ${pct(ms, entry.ms)}`)
        .join(', ')
      return `| ${code(entry.name)} | ${code(entry.location)} | ${num(entry.ms)} | ${pct(entry.ms, busy)} | ${split} |`
    }),
  )
  return lines
}

function ownerName(owner: string): string {
  if (owner.startsWith('dep:')) return `dep ${owner.slice(4)}`
  return (
    {
      ours: 'ours',
      bench: 'bench harness',
      node: 'Node internals',
      v8: 'V8 builtins / native',
      gc: 'garbage collector',
      program: '(program)',
      idle: 'idle',
    } as Record<string, string>
  )[owner] ?? owner
}

/** Renders a run as Markdown. */
export function renderReport(results: BenchResults): string {
  const m = results.machine
  const s = results.settings as Record<string, unknown>
  const rows = ingestRows(results)
  const soaks = results.soak.map(analyseSoak)
  const checks = checkTargets(results, rows, soaks)
  const lines: string[] = []
  const push = (...more: string[]) => lines.push(...more)
  // Runs from before the option had the machine experiments always.
  const machineRun = s.machine === true || (s.machine === undefined && m.pageFaultUs !== undefined)
  const flags = [...(results.quick ? ['--quick'] : []), ...(machineRun ? ['--machine'] : [])]
  const ran = (s.targets as string[] | undefined) ?? []

  push(
    '# event-ingest bench results',
    '',
    `Written by \`npm run bench${flags.length > 0 ? ` -- ${flags.join(' ')}` : ''}\` on ${results.finishedAt} (${num(results.wallSeconds / 60, 1)} min).` +
      (results.quick ? ' **Quick (smoke) run: one short repetition, small sizes — not a measurement.**' : ''),
    '',
    '## Machine',
    '',
    `- CPU: ${m.cpuModel}, ${m.cores} cores; ${m.memoryGiB} GiB memory; ${m.platform}`,
    `- Node ${m.node}${m.redis ? `; Redis ${m.redis} (local)` : ''}`,
    ...(m.pageFaultUs !== undefined ? [`- A minor page fault (fresh memory touched for the first time) costs ${num(m.pageFaultUs, 1)} µs here (64 MiB touched once per page at the start of the run); transparent huge pages: ${m.transparentHugePages ?? 'unknown'}`] : []),
    `- Packages: ${Object.entries(m.packages).map(([name, version]) => `${name} ${version}`).join(', ')}`,
    `- 1-minute load average: ${num(m.loadStart, 2)} at start, ${num(m.loadEnd ?? Number.NaN, 2)} at end`,
    ...diskReportLines(results.disk),
    ...results.notes.map((note) => `- **Note:** ${note}`),
    '',
    '## Method',
    '',
    `- Every server runs in its own Node process on 127.0.0.1 (\`NODE_ENV=production\`) and loads event-ingest as built by unbuild at the start of the run (the build of \`npm run build\`, without type declarations, into a temporary folder), the code a host runs. autocannon ${m.packages.autocannon} runs as a library in the runner process: ${s.connections} connections, no pipelining, ${s.duration} s per measured run after ${s.warmup} s of untimed warm-up on each fresh server.`,
    `- ${s.reps} repetition(s), interleaved: each repetition starts every target in turn (a new process each time, so every run starts from an empty store) and measures both bodies, so drift of the machine hits all targets alike. Tables give the median with min–max over repetitions; ratios are paired within a repetition, then summarised the same way.`,
    `- Bodies: a batch of ${results.bodies.batch.events} canonical events (${num(results.bodies.batch.bytes)} bytes; all ten event names, each from a source it is expected from) and a one-event array (${num(results.bodies.single.bytes)} bytes). Every request carries fresh ids: autocannon's \`setupRequest\` hook takes each body from a factory that copies a pre-serialised template and writes a new fixed-width serial into every id (no pool, no repeats), so ingest stores instead of deduplicating. The server-side counters confirm it: a run with a duplicate, a rejected event, an error or a non-2xx answer is flagged.`,
    '- Baselines, same run, own processes: bare `node:http` (read the body, `JSON.parse`, check for an array, push the events into a bounded ring, 200 with a small JSON answer); per framework, a bare route doing only the same with the framework\'s own JSON body reading (h3 `event.req.json()`, `express.json()`, Fastify\'s built-in parser, `@koa/bodyparser`); and each of these servers once more keeping every body it receives for the life of the process (`node-keep`, `h3-keep`, ...): bare node the bytes received, h3 the text of `event.req.text()` (what its `json()` parses), Express the raw bytes `express.json()` hands its `verify` hook, Fastify the raw bytes fed to its own JSON parser, Koa the `rawBody` text of `@koa/bodyparser`.',
    '- Hand-written routes, same run, own processes (`*-hand` on memory, `*-hand-redis` on Redis; bench/hand.ts): per framework, what a team writes instead of mounting event-ingest: the framework\'s JSON body reading and schema validation (zod for h3, Express and Koa; Fastify\'s `schema.body` JSON Schema), dedupe by id, keeping the accepted events: on memory a `Set` of ids and an array; on Redis one pipeline of `SET <id> 1 EX 86400 NX` per event, then one `SET` of the accepted events.',
    `- Redis: ${results.machine.redisOwn ? 'a redis-server the run started for itself on a free loopback port (`--save \'\' --appendonly no`), stopped at the end' : 'the Redis given with `--redis-url`'}; every Redis target under a unique key prefix, deleted afterwards. Around each measured run the runner reads \`INFO commandstats\`, \`total_reads_processed\` (socket reads: one per round trip a client makes; commands written in the same tick by one connection may share one) and the main thread's CPU time (\`INFO cpu\`) on that server, for the commands, round trips and Redis CPU per request; that thread's CPU per batch gives an estimate of the Redis server's bound under each target's own traffic. The limit itself is measured once per repetition: event-ingest's batch script with the same keys and arguments as a batch of 50 from the h3-redis target (fresh ids, the record, the minute counter), called for ${s.duration} s from the runner with 64 calls in flight on one connection (bench/redis-limit.ts): no HTTP and no validation, only what the Redis server must do.`,
    '- Measured: event-ingest mounted in each framework as `test/helpers/hosts.ts` mounts it (no host body parser), memory driver; on Redis in each framework; h3 also with the fs driver (temp dir, fsync on, the default)' +
      (ran.includes('h3-hugepages')
        ? ', and, for reference only, h3 + memory in a process started with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc\'s malloc on transparent huge pages; the same code).'
        : '.') +
      ' Ingest is open (no token).',
    '- Latency: every 2xx response timed (exact p50/p99 per run). Server CPU: `process.cpuUsage()` read in the server over IPC at the start and end of each run (user + system, % of one core, and per 2xx response); page faults per response from `process.resourceUsage().minorPageFault` read with it.',
    `- Stats and schema: events loaded in-process through \`ingest.ingest()\` (batches of 1000), then ${s.statsRequests} sequential timed \`GET /admin/events/stats\` (admin token) and \`GET /events/schema\` on one keep-alive connection, at each size.`,
    `- Soak: ${num(Number(s.soakSeconds))} s of batch load per driver (${(s.soakDrivers as string[]).join(', ')})${Number(s.soakEvents) > 0 ? `, paced to store about ${num(Number(s.soakEvents))} events per run (${num(Number(s.soakEvents) / Number(s.soakSeconds))} events/s, the same pace for every driver, so the memory driver — which keeps every event in the process — stays within memory)` : ', unpaced'}; \`heapUsed\` and RSS read after a full GC (\`--expose-gc\`) every ${s.soakSampleSeconds} s, plus once with the load paused before and after.`,
    `- Profiles: \`node --cpu-prof\` on ${((s.profiles as { target: string; body: string }[] | undefined) ?? [{ target: (s.profileTarget as string | undefined) ?? 'h3', body: 'batch' }]).map((p) => `${targets.find((t) => t.id === p.target)?.label ?? p.target} (${p.body === 'batch' ? 'batch of 50' : 'one-event arrays'})`).join(', ')}, each under ${s.profileSeconds} s of its load after the warm-up, one profile per kind of goal; positions in the build mapped back to .ts lines through its source maps.`,
    '- Claims: the memory driver\'s claim table (src/storage/claim-table.ts) against a `Map` doing the same job (bench/claim-map.ts: id → claim value; the ids a claim call set are the handle that forgets its batch, as the table\'s entry number is), in the runner process, on the memory store\'s pattern once its bound is reached: each step claims a batch of 50 fresh ids and forgets the claims of the oldest batch, at 100,000 claims held (the default bound) and 1,500,000; 3 alternating rounds of 20,000 steps, each on a fresh structure filled first; the memory it keeps once filled (heap and array buffers) read between two full GCs (the ids\' strings included: the table keeps them joined per batch, the Map one string each).',
    '- Run it: `npm run bench` (full), `npm run bench -- --quick` (smoke), `npm run bench -- --machine` (also the machine experiments: the cost of a page fault here, timed at the start, and h3 + memory with glibc\'s malloc on huge pages), `npm run bench -- --help` for every option (durations, repetitions, targets, phases, sizes).' +
      (machineRun ? '' : ' This run had no machine experiments.'),
    '',
  )

  push(
    '## Targets',
    '',
    'The comparison a user makes: event-ingest mounted in each framework against the route a team writes instead in that framework (`*-hand`, bench/hand.ts: the framework\'s own schema validation, dedupe by id, keeping the accepted events; on Redis one pipeline of `SET id NX EX 86400` per event and one `SET` of the accepted events), on the same storage, while event-ingest also enforces limits and auth, dedupes exactly, counts stats and writes the outbox. Memory mounts are also held to the bare routes that keep every body they receive (`*-keep`); the ring-buffer servers (`node`, `*-bare`) are the upper bound, with no goal. Ratios are paired within a repetition; the server CPU per event of both sides stands beside each.',
    '',
    '| Target | Goal | Measured | Met |',
    '| --- | --- | --- | --- |',
  )
  for (const check of checks) {
    push(`| ${check.what} | ${check.goal} | ${check.measured} | ${check.info ? '—' : check.met === undefined ? 'not measured' : check.met ? 'yes' : `**no** — ${check.shortfall}`} |`)
  }
  const throughput = checks.filter((c) => c.throughput && c.met !== undefined)
  if (throughput.length > 0) push('', `Throughput goals missed: ${throughput.filter((c) => c.met === false).length} of ${throughput.length}.`)
  const missed = checks.filter((c) => c.met === false)
  if (missed.length > 0) {
    for (const profile of profilesOf(results)) {
      const body = profile.body ?? 'batch'
      const storage = targets.find((t) => t.id === (profile.target ?? 'h3'))?.storage
      const these = missed.filter((c) => c.body === body && c.storage === storage)
      if (these.length === 0) continue
      const top = profile.blame.slice(0, 5)
      push(
        '',
        `${these.length === 1 ? 'One goal' : `${these.length} goals`} missed on ${storage} under the ${bodyLoad(profile)} load: of the time of our ingest path, the profile of ${targets.find((t) => t.id === (profile.target ?? 'h3'))?.label ?? 'h3 + memory'} under that load (below) puts most in: ${top
          .map((entry) => `${code(entry.name)} at ${code(entry.location)} (${pct(entry.ms, profile.busyMs)})`)
          .join(', ')}.`,
      )
    }
    // The profile sees the main thread only: the fs driver's file operations run in libuv's
    // threads. What they take alone on this disk is measured beside it.
    if (missed.some((c) => c.storage === 'fs') && results.disk?.claimBatchesPerSecond !== undefined) {
      push(
        '',
        `On fs, the profile sees the main thread only; the driver's file operations run in libuv's threads. Measured alone in this run, with plain node:fs calls: the dedupe claims of a batch of 50 as the driver makes them, ${claimCeilingText(results.disk)}; one 16 KB record written, fsynced, renamed and its directory fsynced, ${Math.round(results.disk.writeRenamePerSecond)}/s one at a time. The goal is ${FS_GOAL_RATIO * FS_BASELINE_BATCHES} batches/s.`,
      )
    }
  }
  push('')

  if (rows.length > 0) {
    push('## Ingest: batch of 50 events', '', ...ingestTable(rows, 'batch'), '')
    push('## Ingest: one event per request', '', ...ingestTable(rows, 'single'), '')
    push(...againstKeeping(rows))
    push(...redisTable(rows))
  }

  if (results.stats.length > 0) {
    push(
      '## Stats and schema latency against stored events',
      '',
      '| Driver | Stored events | Load time (s) | Heap MB | stats p50 ms | stats p99 ms | schema p50 ms | schema p99 ms | stats body bytes |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    )
    for (const t of results.stats) {
      push(`| ${t.driver} | ${num(t.stored)} | ${num(t.loadMs / 1000, 1)} | ${num(t.heapUsedMB)} | ${num(t.stats.p50, 2)} | ${num(t.stats.p99, 2)} | ${num(t.schema.p50, 2)} | ${num(t.schema.p99, 2)} | ${num(t.stats.bytes)} |`)
    }
    push('')
    for (const driver of ['memory', 'redis'] as const) {
      const timings = results.stats.filter((t) => t.driver === driver)
      if (timings.length < 2) continue
      const small = timings[0]!
      const large = timings[timings.length - 1]!
      const statsRatio = large.stats.p50 / small.stats.p50
      const schemaRatio = large.schema.p50 / small.schema.p50
      push(`- ${driver}: at ${num(large.stored)} stored events stats p50 is ${statsRatio.toFixed(2)}× and schema p50 ${schemaRatio.toFixed(2)}× that at ${num(small.stored)} — ${statsRatio <= 2 && schemaRatio <= 2 ? '**within 2×**' : '**not within 2×**'}.`)
    }
    push('')
  }

  if (soaks.length > 0) {
    push(
      '## Heap and RSS over a long ingest run',
      '',
      '| Driver | Minutes | Events stored | req/s | heapUsed after GC, before → after (MB) | Heap growth per event | Heap slope under load (MB/min, r²) | RSS before → after (MB) | Verdict |',
      '| --- | ---: | ---: | ---: | --- | ---: | --- | --- | --- |',
    )
    for (const [i, a] of soaks.entries()) {
      const raw = results.soak[i]!
      push(
        `| ${a.driver} | ${num(a.minutes, 1)} | ${num(a.events)} | ${num(raw.rps)} | ${num(raw.before.heapUsed / 2 ** 20, 1)} → ${num(raw.after.heapUsed / 2 ** 20, 1)} | ${num(a.heapBytesPerEvent, 1)} B | ${num(a.heapSlopeMBPerMin, 2)} (${num(a.r2, 2)}) | ${num(raw.before.rss / 2 ** 20)} → ${num(raw.after.rss / 2 ** 20)} | ${a.verdict} |`,
      )
    }
    push('', 'heapUsed after GC under load, MB (t in s):', '')
    for (const raw of results.soak) {
      push(`- ${raw.driver}: ${raw.samples.map((p) => `${num(p.t, raw.seconds < 60 ? 1 : 0)}s ${num(p.heapUsed / 2 ** 20, 1)}`).join(', ')}`)
    }
    push('')
  }

  const kept = keptMemory(rows, results.machine.pageFaultUs, results.soak.map(analyseSoak).find((a) => a.driver === 'memory'))
  if (profilesOf(results).length > 0 || kept.length > 0) push('## What costs', '')
  for (const profile of profilesOf(results)) push(...profileSection(profile), '')
  if (kept.length > 0) push(...kept, '')

  push('## Targets in this run', '', targets.filter((t) => (results.settings.targets as string[]).includes(t.id)).map((t) => `${code(t.id)} ${t.label}`).join(' · '), '')
  return `${lines.join('\n')}\n`
}
