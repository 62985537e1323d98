/**
 * The disk's own rates, measured in the run beside the fs target, so its figures read against what
 * the disk under it can do at the same moment: appends of one line each followed by an fsync, and
 * writes of a 16 KB file each followed by an fsync, a rename and an fsync of its directory, one
 * at a time. Then the file operations of the fs driver's dedupe claims alone, as it makes them
 * for a batch of 50 events (src/storage/fs-driver.ts `setIfAbsentAll`: directory fsyncs shared by
 * the batches that arrive while one runs), with plain `node:fs` calls and 32 batches in flight as
 * under the fs target's load, into a claims directory that starts empty: what that claim design
 * takes on this disk, whatever the rest of the ingest path costs.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { link, mkdir, open, rename, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** What {@link measureDisk} found, per second. */
export interface DiskRates {
  /** One short line appended to one file, then fsync, one after another. */
  appendFsyncPerSecond: number
  /** A 16 KB file written and fsynced, renamed into place, its directory fsynced, one after another. */
  writeRenamePerSecond: number
  /**
   * Batches of 50 claims: a value file written and fsynced, `link(2)` from it to 50 names in one
   * directory (names as long as the driver's for the bench's ids), the directory fsynced (one
   * fsync shared by the batches that wait for it, as the driver does), the file unlinked; 32
   * batches in flight.
   */
  claimBatchesPerSecond?: number
  /** This process's CPU time (user + system, µs, libuv's threads included) per batch of those claims. */
  claimCpuMicros?: number
  /** The share of that CPU time spent in the kernel (system time). */
  claimSystemShare?: number
  /** Seconds each was run. */
  seconds: number
}

/** fs batches of 50 events a second at 32 connections measured here before the goal was set (the goal asks 3x it). */
export const FS_BASELINE_BATCHES = 330
/** The goal: at least this many times {@link FS_BASELINE_BATCHES}. */
export const FS_GOAL_RATIO = 3

/** Runs each of the two for `seconds` in a temp directory (removed after) and reports its rate. */
export async function measureDisk(seconds: number): Promise<DiskRates> {
  const dir = mkdtempSync(join(tmpdir(), 'ei-bench-disk-'))
  try {
    const appendFsyncPerSecond = await appendRate(dir, seconds)
    const writeRenamePerSecond = await writeRenameRate(dir, seconds)
    const claims = await claimRate(dir, seconds)
    return { appendFsyncPerSecond, writeRenamePerSecond, claimBatchesPerSecond: claims.perSecond, claimCpuMicros: claims.cpuMicros, claimSystemShare: claims.systemShare, seconds }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function appendRate(dir: string, seconds: number): Promise<number> {
  const handle = await open(join(dir, 'log'), 'a')
  const line = `${'x'.repeat(99)}\n`
  try {
    let count = 0
    const start = performance.now()
    const end = start + seconds * 1000
    while (performance.now() < end) {
      await handle.write(line)
      await handle.sync()
      count++
    }
    return count / ((performance.now() - start) / 1000)
  } finally {
    await handle.close()
  }
}

async function writeRenameRate(dir: string, seconds: number): Promise<number> {
  const data = new Uint8Array(16 * 1024).fill(120)
  const dirHandle = await open(dir, 'r')
  try {
    let count = 0
    const start = performance.now()
    const end = start + seconds * 1000
    while (performance.now() < end) {
      const temp = join(dir, `.f${count}.tmp`)
      const file = await open(temp, 'wx')
      try {
        await file.writeFile(data)
        await file.sync()
      } finally {
        await file.close()
      }
      await rename(temp, join(dir, `f${count % 64}`))
      await dirHandle.sync()
      count++
    }
    return count / ((performance.now() - start) / 1000)
  } finally {
    await dirHandle.close()
  }
}

/** Claims in flight, and ids per batch, as under the fs target's load. */
const CLAIM_BATCHES_IN_FLIGHT = 32
const CLAIMS_PER_BATCH = 50

async function claimRate(dir: string, seconds: number): Promise<{ perSecond: number; cpuMicros: number; systemShare: number }> {
  const claimsDir = join(dir, 'd')
  await mkdir(claimsDir)
  const dirHandle = await open(claimsDir, 'r')
  // The directory fsync as the driver shares it: callers that arrive while one runs wait for the
  // one next after it, which covers every link made before it started.
  let current: Promise<void> | undefined
  let next: Promise<void> | undefined
  const syncDir = (): Promise<void> => {
    if (!current) {
      const run = dirHandle.sync()
      current = run
      const clear = () => {
        current = undefined
      }
      run.then(clear, clear)
      return run
    }
    next ??= current.then(() => {
      next = undefined
      return syncDir()
    })
    return next
  }
  let serial = 0
  // As the driver names a claim: `x` and the hex of the id's UTF-8 (ids like the bench's own).
  const name = (batch: number, i: number) => `x${Buffer.from(`evt_0a1b2c3d_${batch.toString(36).padStart(8, '0')}_${i}`).toString('hex')}`
  const batch = async () => {
    const n = serial++
    const value = join(claimsDir, `.v${n}.tmp`)
    const file = await open(value, 'wx')
    try {
      await file.writeFile(`events:b:2026120100:${n}|${Date.now()}`)
      await file.sync()
    } finally {
      await file.close()
    }
    await Promise.all(Array.from({ length: CLAIMS_PER_BATCH }, (_, i) => link(value, join(claimsDir, name(n, i)))))
    await syncDir()
    await unlink(value)
  }
  try {
    let count = 0
    const cpu = process.cpuUsage()
    const start = performance.now()
    const end = start + seconds * 1000
    // Every worker ends before the result (or the first failure) is known: nothing is still
    // writing into the directory when it is removed.
    const workers = await Promise.allSettled(Array.from({ length: CLAIM_BATCHES_IN_FLIGHT }, async () => {
      while (performance.now() < end) {
        await batch()
        count++
      }
    }))
    const failed = workers.find((worker) => worker.status === 'rejected')
    if (failed) throw (failed as PromiseRejectedResult).reason
    const used = process.cpuUsage(cpu)
    return { perSecond: count / ((performance.now() - start) / 1000), cpuMicros: (used.user + used.system) / Math.max(1, count), systemShare: used.system / Math.max(1, used.user + used.system) }
  } finally {
    await Promise.allSettled([current, next])
    await dirHandle.close()
  }
}

/** The fs driver's claims alone on this disk, as the report words it; empty when not measured. */
export function claimCeilingText(disk: DiskRates | undefined): string {
  if (disk?.claimBatchesPerSecond === undefined) return ''
  const system = disk.claimSystemShare === undefined ? '' : ` (${Math.round(disk.claimSystemShare * 100)}% of it system time)`
  return `${Math.round(disk.claimBatchesPerSecond)} batches of ${CLAIMS_PER_BATCH} claims/s (a value file, a link(2) per id, a shared directory fsync; ${CLAIM_BATCHES_IN_FLIGHT} in flight, into a directory that starts empty), ${Math.round((disk.claimCpuMicros ?? 0) / 1000 * 10) / 10} ms of CPU each${system}`
}

/** The report's line on the disk's own rates (none when the fs target did not run). */
export function diskReportLines(disk: DiskRates | undefined): string[] {
  if (!disk) return []
  const claims = claimCeilingText(disk)
  return [
    `- Disk, measured in this run (${disk.seconds} s each): ${Math.round(disk.appendFsyncPerSecond)} append+fsync/s and ${Math.round(disk.writeRenamePerSecond)} write+fsync+rename+directory fsync of 16 KB/s, one at a time${claims ? `; the fs driver's dedupe claims alone, with plain node:fs calls: ${claims}` : ''}`,
  ]
}
