import { describe, expect, it } from 'vitest'
import { diskReportLines, FS_BASELINE_BATCHES, FS_GOAL_RATIO, measureDisk } from '../../bench/disk'
import { checkTargets, ingestRows, type BenchResults, type IngestSample } from '../../bench/results'

const goal = FS_GOAL_RATIO * FS_BASELINE_BATCHES
const disk = { appendFsyncPerSecond: 3700, writeRenamePerSecond: 2300, seconds: 2 }

function fsSample(round: number, rps: number): IngestSample {
  return { round, target: 'h3-fs', body: 'batch', rps, eps: rps * 50, p50: 1, p99: 2, cpuPct: 50, ok: rps, non2xx: 0, errors: 0, timeouts: 0, accepted: rps * 50, duplicates: 0, rejected: 0, valid: true }
}

function fsGoal(rates: number[]) {
  const results = { ingest: rates.map((rps, i) => fsSample(i, rps)), stats: [], soak: [], notes: [], disk } as unknown as BenchResults
  return checkTargets(results, ingestRows(results), []).find((check) => check.what.includes('(fs)'))
}

describe('bench: the fs goal row and the disk rates', () => {
  it('says met at exactly 3x the previous fs batch rate, on the median of the runs, with the disk rates beside it', () => {
    const row = fsGoal([goal - 500, goal, goal + 1])!
    expect(row.met).toBe(true)
    expect(row.measured).toBe(`3.00 (${goal} batches/s; the disk alone: 3700 append+fsync/s, 2300 write+rename+directory fsync of 16 KB/s)`)
  })

  it('says missed one batch a second below it', () => {
    const row = fsGoal([goal - 1])!
    expect(row.met).toBe(false)
    expect(row.shortfall).toBe(`${goal - 1} of ${goal} batches/s`)
  })

  it('has no fs row without fs runs, and a disk line only when the disk was measured', () => {
    expect(fsGoal([])).toBeUndefined()
    expect(diskReportLines(disk)).toEqual(['- Disk, measured in this run (2 s each): 3700 append+fsync/s and 2300 write+fsync+rename+directory fsync of 16 KB/s, one at a time'])
    expect(diskReportLines(undefined)).toEqual([])
  })

  it("puts the fs driver's claims alone on the disk beside the fs figures, with the CPU they take", () => {
    const claims = { ...disk, claimBatchesPerSecond: 1128.4, claimCpuMicros: 1449, claimSystemShare: 0.756 }
    expect(diskReportLines(claims)).toEqual([
      "- Disk, measured in this run (2 s each): 3700 append+fsync/s and 2300 write+fsync+rename+directory fsync of 16 KB/s, one at a time; the fs driver's dedupe claims alone, with plain node:fs calls: 1128 batches of 50 claims/s (a value file, a link(2) per id, a shared directory fsync; 32 in flight, into a directory that starts empty), 1.4 ms of CPU each (76% of it system time)",
    ])
    const results = { ingest: [fsSample(0, goal - 1)], stats: [], soak: [], notes: [], disk: claims } as unknown as BenchResults
    const row = checkTargets(results, ingestRows(results), []).find((check) => check.what.includes('(fs)'))!
    expect(row.measured).toBe(`${((goal - 1) / FS_BASELINE_BATCHES).toFixed(2)} (${goal - 1} batches/s; the disk alone: 3700 append+fsync/s, 2300 write+rename+directory fsync of 16 KB/s; the driver's claims alone: 1128 batches of 50 claims/s (a value file, a link(2) per id, a shared directory fsync; 32 in flight, into a directory that starts empty), 1.4 ms of CPU each (76% of it system time))`)
  })

  it('measures positive rates of all three on the local disk', async () => {
    const measured = await measureDisk(0.1)
    expect(measured.appendFsyncPerSecond).toBeGreaterThan(0)
    expect(measured.writeRenamePerSecond).toBeGreaterThan(0)
    expect(measured.claimBatchesPerSecond).toBeGreaterThan(0)
    expect(measured.claimCpuMicros).toBeGreaterThan(0)
    expect(measured.claimSystemShare).toBeGreaterThan(0)
    expect(measured.claimSystemShare).toBeLessThanOrEqual(1)
  })
})
