/**
 * The disk's own rates, measured in the run beside the fs target, so its figures read against what
 * the disk under it can do at the same moment: appends of one line each followed by an fsync, and
 * writes of a 16 KB file each followed by an fsync, a rename and an fsync of its directory, one
 * at a time.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { open, rename } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** What {@link measureDisk} found, per second. */
export interface DiskRates {
  /** One short line appended to one file, then fsync, one after another. */
  appendFsyncPerSecond: number
  /** A 16 KB file written and fsynced, renamed into place, its directory fsynced, one after another. */
  writeRenamePerSecond: number
  /** Seconds each of the two was run. */
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
    return { appendFsyncPerSecond, writeRenamePerSecond, seconds }
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

/** The report's line on the disk's own rates (none when the fs target did not run). */
export function diskReportLines(disk: DiskRates | undefined): string[] {
  if (!disk) return []
  return [`- Disk, measured in this run (${disk.seconds} s each, one at a time): ${Math.round(disk.appendFsyncPerSecond)} append+fsync/s; ${Math.round(disk.writeRenamePerSecond)} write+fsync+rename+directory fsync of 16 KB/s`]
}
