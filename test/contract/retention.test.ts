import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createStorage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest, type EventIngest } from 'event-ingest'
import { memoryWith } from '../helpers/drivers'
import { makeEvent } from '../helpers/fixtures'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'
import { databaseUrl, dropSchemas, requirePostgres, uniqueSchema } from '../helpers/postgres'

const HOUR = 3_600_000
const dirs: string[] = []
const prefix = uniquePrefix('retention')
const root = fileURLToPath(new URL('../..', import.meta.url))

const pgPrefix = uniqueSchema('retention')
let pgPlace = 0

beforeAll(async () => {
  await requireRedis()
  await requirePostgres()
})
afterAll(async () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  await deletePrefix(prefix)
  await dropSchemas(pgPrefix)
})

const drivers = {
  memory: () => 'memory:',
  fs: () => {
    const dir = mkdtempSync(join(tmpdir(), 'ei-retention-'))
    dirs.push(dir)
    return `fs:${dir}`
  },
  redis: () => ({ driver: 'redis' as const, url: redisUrl, base: `${prefix}:${Math.random().toString(36).slice(2)}` }),
  postgres: () => ({ driver: 'postgres' as const, url: databaseUrl, schema: `${pgPrefix}_${++pgPlace}` }),
}

/** Ids of every stored event. */
async function storedIds(ingest: EventIngest<any>): Promise<string[]> {
  return (await ingest.events({ limit: 1000 })).events.map((event) => event.id)
}

/** Polls until `check` holds, or fails with what it last saw. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

describe.each(Object.keys(drivers) as (keyof typeof drivers)[])('retentionMs on %s storage', (driver) => {
  it('deletes batches older than the retention after start and again every pruneIntervalMs, keeping newer ones', async () => {
    const errors: unknown[] = []
    const ingest = createEventIngest({ env: {}, storage: drivers[driver](), dedupeWindowMs: 1000, retentionMs: 1000, pruneIntervalMs: 100, onError: (error) => errors.push(error) })
    try {
      const old = [makeEvent(), makeEvent()]
      const fresh = [makeEvent()]
      expect((await ingest.ingest(old, { receivedAt: Date.now() - 2 * HOUR })).accepted).toBe(2)
      expect((await ingest.ingest(fresh)).accepted).toBe(1)
      await until('the old batch is pruned', async () => !(await storedIds(ingest)).includes(old[0]!.id))
      expect(await storedIds(ingest)).toEqual([fresh[0]!.id])

      // Not a single run: a batch that is too old when it arrives later goes too.
      const later = [makeEvent()]
      expect((await ingest.ingest(later, { receivedAt: Date.now() - 3 * HOUR })).accepted).toBe(1)
      await until('the later old batch is pruned', async () => !(await storedIds(ingest)).includes(later[0]!.id))
      expect(await storedIds(ingest)).toEqual([fresh[0]!.id])
      expect(errors).toEqual([])
    } finally {
      await ingest.close()
    }
  })
})

describe('retentionMs', () => {
  it('stops pruning at close()', async () => {
    // One storage, two cores: the first prunes, the second (no retention) writes after it closed.
    const storage = createStorage({ driver: memoryDriver() })
    const pruner = createEventIngest({ env: {}, storage, dedupeWindowMs: 1000, retentionMs: 1000, pruneIntervalMs: 50 })
    const before = makeEvent()
    await pruner.ingest([before], { receivedAt: Date.now() - 2 * HOUR })
    await until('the first old batch is pruned', async () => !(await storedIds(pruner)).includes(before.id))
    await pruner.close()

    const writer = createEventIngest({ env: {}, storage })
    const after = makeEvent()
    await writer.ingest([after], { receivedAt: Date.now() - 2 * HOUR })
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(await storedIds(writer)).toEqual([after.id])
    await writer.close()
  })

  it('stops a prune under way at close(), between two storage calls', async () => {
    // 100 old batches, each removal 100 ms (a prune removes up to 16 at a time).
    let removals = 0
    const slow = memoryWith('memory', (memory) => ({
      async removeItem(key) {
        if (key.startsWith('events:b:')) {
          removals++
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
        return memory.removeItem!(key, {})
      },
    }))
    const storage = createStorage({ driver: slow })
    const writer = createEventIngest({ env: {}, storage })
    for (let i = 0; i < 100; i++) await writer.ingest([makeEvent()], { receivedAt: Date.now() - 2 * HOUR })
    await writer.close()
    const pruner = createEventIngest({ env: {}, storage, dedupeWindowMs: 1000, retentionMs: 1000 })
    await until('the prune has started', async () => removals > 0)
    await pruner.close()
    const removedByClose = removals
    // The removals under way when it stopped, and no more: far from all 100.
    expect(removedByClose).toBeLessThanOrEqual(48)
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(removals).toBe(removedByClose)
    const reader = createEventIngest({ env: {}, storage })
    expect((await storedIds(reader)).length).toBe(100 - removedByClose)
    await reader.close()
  })

  it('does not wait at close() for a prune that a hung storage never lets finish', async () => {
    // Claims are listed for expiry through the driver here (not the memory driver's own table),
    // and that listing never answers.
    let hung = false
    const hangs = memoryWith('hangs', (memory) => ({
      getKeys(base, opts) {
        if (!base.startsWith('events:d')) return memory.getKeys!(base, opts)
        hung = true
        return new Promise<string[]>(() => {})
      },
    }))
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: hangs }), storageTimeoutMs: 100, dedupeWindowMs: 1000, retentionMs: 1000 })
    await until('the prune hangs', async () => hung)
    const started = Date.now()
    await ingest.close()
    // Bounded by twice the storage timeout (200 ms here), not by the storage.
    expect(Date.now() - started).toBeLessThan(2000)
  })

  it('never keeps the process alive', async () => {
    // A process that never calls close() still exits when its work is done.
    const script = `
      import { createEventIngest } from ${JSON.stringify(new URL('../../src/index.ts', import.meta.url).href)}
      const ingest = createEventIngest({ env: {}, retentionMs: 86_400_000, pruneIntervalMs: 60_000 })
      const result = await ingest.ingest([{ id: 'e1', name: 'ProductViewed', schemaVersion: 1, occurredAt: new Date().toISOString(), source: 'storefront', payload: {} }])
      console.log(JSON.stringify(result))
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk))
    const exited = await new Promise<number | null | 'still running'>((resolve) => {
      const timer = setTimeout(() => resolve('still running'), 10_000)
      child.once('exit', (code) => {
        clearTimeout(timer)
        resolve(code)
      })
    })
    if (exited === 'still running') child.kill('SIGKILL')
    expect(exited, output).toBe(0)
    expect(output).toContain('{"accepted":1,"duplicates":0,"rejected":[]}')
  }, 20_000)

  it('is checked when the core is created', async () => {
    expect(() => createEventIngest({ env: {}, retentionMs: 0 })).toThrow(/retentionMs must be a positive number, got 0/)
    expect(() => createEventIngest({ env: {}, retentionMs: HOUR })).toThrow(/retentionMs \(3600000\) must be at least dedupeWindowMs \(86400000\)/)
    expect(() => createEventIngest({ env: {}, pruneIntervalMs: HOUR })).toThrow(/pruneIntervalMs is set but retentionMs is not/)
    expect(() => createEventIngest({ env: {}, retentionMs: 86_400_000, pruneIntervalMs: -1 })).toThrow(/pruneIntervalMs must be a positive number/)
    // Node would run a longer timer after 1 ms: the prune would run back to back.
    expect(() => createEventIngest({ env: {}, retentionMs: 86_400_000, pruneIntervalMs: 2_147_483_648 })).toThrow(/pruneIntervalMs must be at most 2147483647/)
    const longest = createEventIngest({ env: {}, retentionMs: 86_400_000, pruneIntervalMs: 2_147_483_647 })
    await expect(longest.close()).resolves.toBeUndefined()
  })
})
