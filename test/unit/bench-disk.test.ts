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
    expect(diskReportLines(disk)).toEqual(['- Disk, measured in this run (2 s each, one at a time): 3700 append+fsync/s; 2300 write+fsync+rename+directory fsync of 16 KB/s'])
    expect(diskReportLines(undefined)).toEqual([])
  })

  it('measures positive rates of both on the local disk', async () => {
    const measured = await measureDisk(0.1)
    expect(measured.appendFsyncPerSecond).toBeGreaterThan(0)
    expect(measured.writeRenamePerSecond).toBeGreaterThan(0)
  })
})
