import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { targets } from '../../bench/targets'

const root = fileURLToPath(new URL('../..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'ei-bench-smoke-'))

afterAll(() => rmSync(dir, { recursive: true, force: true }))

function runBench(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk))
    child.once('error', reject)
    child.once('exit', (code) => resolve({ code, output }))
  })
}

/** The data rows of the Markdown table under `heading`, split into trimmed cells. */
function tableRows(report: string, heading: string): string[][] {
  const section = report.split(`## ${heading}`)[1]?.split('\n## ')[0] ?? ''
  return section
    .split('\n')
    .filter((line) => line.startsWith('| ') && !line.startsWith('| ---') && !line.startsWith('| Target |'))
    .map((line) => line.slice(1, -1).split('|').map((cell) => cell.trim()))
}

const ratio = /^\d+\.\d\d\b/

/** The targets of a run without `--machine`. */
const codeTargets = targets.filter((t) => !t.machine)

describe('npm run bench -- --quick', () => {
  it('runs every target, phase and baseline, and writes a report with numeric ratios to the path it is given', async () => {
    const out = join(dir, 'RESULTS.md')
    const { code, output } = await runBench(['--quick', '--out', out, '--artifacts', dir])
    expect(code, output).toBe(0)
    const report = readFileSync(out, 'utf8')

    for (const heading of ['Ingest: batch of 50 events', 'Ingest: one event per request']) {
      const rows = tableRows(report, heading)
      for (const target of codeTargets) {
        const row = rows.find((cells) => cells[0]!.startsWith(target.label))
        expect(row, `${heading}: a row for ${target.label}`).toBeDefined()
        const [, rps, , , , , cpuPerRequest, faultsPerRequest, vsNode, vsBare] = row!
        expect(rps).toMatch(/^[\d,]+/)
        expect(cpuPerRequest, `${target.label}: CPU per request`).toMatch(/^[\d,]+/)
        expect(faultsPerRequest, `${target.label}: page faults per request`).toMatch(/^-?[\d,]+\.\d\b/)
        if (target.id !== 'node') expect(vsNode, `${target.label} / bare node`).toMatch(ratio)
        if (target.kind === 'ours') expect(vsBare, `${target.label} / its bare route`).toMatch(ratio)
      }
    }
    const keeping = tableRows(report, 'Against baselines that keep what they receive')
    for (const target of codeTargets.filter((t) => t.kind === 'ours' && t.storage === 'memory')) {
      const row = keeping.find((cells) => cells[0] === target.label)
      expect(row, `a row for ${target.label} against the keeping baselines`).toBeDefined()
      expect(row![1], `${target.label} / node-keep, batch`).toMatch(ratio)
      expect(row![2], `${target.label} / node-keep, one event`).toMatch(ratio)
      expect(row![3], `${target.label} / its framework keeping, batch`).toMatch(ratio)
      expect(row![4], `${target.label} / its framework keeping, one event`).toMatch(ratio)
    }
    // Every goal with a measured ratio and a verdict: each mount against its framework's hand-written
    // route (memory and Redis, both bodies), the memory mounts against the keeping routes, h3 one event.
    const goals = tableRows(report, 'Targets')
    const verdict = /^(yes|\*\*no\*\* — \d+% below the goal)/
    for (const framework of ['h3', 'Express', 'Fastify', 'Koa']) {
      for (const storage of ['memory', 'Redis']) {
        for (const body of ['batch of 50', 'one event']) {
          const what = `${framework} + event-ingest (${storage}) / ${framework} hand-written route (${storage}) (${body})`
          const row = goals.find((cells) => cells[0] === what)
          expect(row, `a goal row: ${what}`).toBeDefined()
          expect(row![2]).toMatch(/^\d+\.\d\d\b.*server CPU µs per event [\d.]+ vs [\d.]+/)
          expect(row![3]).toMatch(verdict)
        }
      }
      const keeping = goals.find((cells) => cells[0] === `${framework} + event-ingest (memory) / ${framework} bare route keeping every body (batch of 50)`)
      expect(keeping, `${framework}: a goal row against its keeping route`).toBeDefined()
      expect(keeping![2]).toMatch(ratio)
      expect(keeping![3]).toMatch(verdict)
      // Redis: round trips per batch counted on the bench's own redis-server, and the server's own limit.
      const trips = goals.find((cells) => cells[0]!.startsWith(`${framework} + event-ingest (Redis): Redis round trips per batch of 50`))
      expect(trips, `${framework}: Redis round trips per batch`).toBeDefined()
      expect(trips![2]).toMatch(/^[\d.]+ round trips, [\d.]+ commands per batch/)
      expect(trips![3]).toMatch(/^(yes|\*\*no\*\*)/)
      expect(goals.find((cells) => cells[0]!.startsWith(`${framework} + event-ingest (Redis) / the Redis server's limit`))?.[2]).toMatch(ratio)
    }
    const single = goals.find((cells) => cells[0] === 'h3 + event-ingest (memory) / h3 bare route keeping every body (one event)')
    expect(single?.[3]).toMatch(verdict)
    expect(report).toMatch(/Throughput goals missed: \d+ of 22\./)
    expect(report).toContain('## Redis commands and round trips per request')
    expect(report).toContain('## Stats and schema latency against stored events')
    expect(report).toContain('## Heap and RSS over a long ingest run')
    expect(report).toMatch(/\*\*Top functions by self time\*\*[\s\S]*\| 1 \| `/)
    // One profile per load: the batch and the one-event arrays.
    expect(report).toMatch(/Profile of the h3 \+ event-ingest \(memory\) server under the batch-of-50 load/)
    expect(report).toMatch(/Profile of the h3 \+ event-ingest \(memory\) server under the one-event load/)
    expect(report).toMatch(/Profile of the h3 \+ event-ingest \(Redis\) server under the one-event load/)
    expect(report).toMatch(/Profile of the h3 \+ event-ingest \(fs\) server under the batch-of-50 load/)
    // The Redis server's limit, from the pipelined run of the same script.
    expect(goals.find((cells) => cells[0]!.startsWith("h3 + event-ingest (Redis) / the Redis server's limit"))?.[2]).toMatch(/batches\/s of the [\d,]+ the Redis server took of the same script from a pipelined client/)
    // fs: against the earlier rate, beside the disk's own rates and the driver's claims alone on that disk.
    const fsGoal = goals.find((cells) => cells[0]!.startsWith('h3 + event-ingest (fs), 32 connections, batch of 50'))
    expect(fsGoal, 'a goal row for fs').toBeDefined()
    expect(fsGoal![2]).toMatch(/^\d+\.\d\d \(\d+ batches\/s; the disk alone: \d+ append\+fsync\/s, \d+ write\+rename\+directory fsync of 16 KB\/s; the driver's claims alone: \d+ batches of 50 claims\/s .*, [\d.]+ ms of CPU each \(\d+% of it system time\)\)$/)
    expect(report).toMatch(/- Disk, measured in this run .*the fs driver's dedupe claims alone, with plain node:fs calls: \d+ batches of 50 claims\/s/)
    // The claim table against a Map doing its job, measured in the same run.
    const claims = goals.find((cells) => cells[0]!.startsWith('memory dedupe claims: claim table / a `Map`'))
    expect(claims, 'a row for the claim table against a Map').toBeDefined()
    expect(claims![2]).toMatch(/^\d+\.\d\d of the Map's time: [\d.]+ µs .* vs [\d.]+ µs .* per batch; heap kept -?\d+\.\d vs -?\d+\.\d MB/)
    expect(report).toContain('**Memory kept per request (batch of 50).**')
    // No machine experiments without --machine: no page-fault timing, no huge-pages target.
    expect(report).toContain('Written by `npm run bench -- --quick`')
    expect(report).not.toContain('A minor page fault (fresh memory touched for the first time) costs')
    expect(report).toContain('What a fault costs on this machine is timed only with `--machine`.')
    for (const target of targets.filter((t) => t.machine)) expect(report).not.toContain(target.label)
    expect(report).toContain('This run had no machine experiments.')
  }, 300_000)

  it('runs the machine experiments with --machine: the page-fault cost and the huge-pages target', async () => {
    const out = join(dir, 'RESULTS.machine.md')
    const { code, output } = await runBench(['--quick', '--machine', '--phases', 'ingest', '--targets', 'node,h3,h3-hugepages', '--out', out, '--artifacts', dir])
    expect(code, output).toBe(0)
    const report = readFileSync(out, 'utf8')
    expect(report).toContain('Written by `npm run bench -- --quick --machine`')
    expect(report).toMatch(/A minor page fault \(fresh memory touched for the first time\) costs [\d.,]+ µs here/)
    const huge = targets.find((t) => t.id === 'h3-hugepages')!
    const row = tableRows(report, 'Ingest: batch of 50 events').find((cells) => cells[0]!.startsWith(huge.label))
    expect(row, 'a row for the huge-pages target').toBeDefined()
    expect(row![7], 'its page faults per request').toMatch(/^-?[\d,]+\.\d\b/)
    expect(report).toMatch(/\*\*Memory kept per request \(batch of 50\)\.\*\*.*(µs per fault on this machine|a fault costs [\d.,]+ µs on this machine).*glibc's malloc on transparent huge pages/)
    expect(report).not.toContain('This run had no machine experiments.')
  }, 120_000)

  it('refuses a bad option value before running, naming the option', async () => {
    for (const [flag, value] of [['--settle', '-1'], ['--reps', '0'], ['--duration', 'soon']]) {
      const { code, output } = await runBench([`${flag}=${value}`])
      expect(code, output).not.toBe(0)
      expect(output).toContain(`${flag}: expected a number >=`)
    }
    const { code, output } = await runBench(['--targets=node,h3-hugepages'])
    expect(code, output).not.toBe(0)
    expect(output).toContain('--targets: h3-hugepages is a machine experiment: add --machine to run it')
    for (const value of ['h3:huge', 'nowhere:batch', 'h3']) {
      const refused = await runBench([`--profiles=${value}`])
      expect(refused.code, refused.output).not.toBe(0)
      expect(refused.output).toContain(`--profiles: ${JSON.stringify(value)} is not <target>:<batch|single>`)
    }
  }, 60_000)
})
