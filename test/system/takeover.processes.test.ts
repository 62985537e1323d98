/**
 * Stale claims taken over by several processes at once. A batch whose instance died between its
 * dedupe claims and its write leaves claims naming a batch that is not stored; once they are stale
 * (4 storage timeouts), a retry takes them over. Retries that reach several instances at the same
 * moment (one Redis prefix, one fs directory) find the same stale claims: each id must still be
 * taken over by one of them only, and stored once.
 *
 * The dead instance is played by a core in this process whose batch writes never finish (a
 * storage with a black hole mounted under the batch records): its claims stay behind, as after a
 * kill -9 between claim and write. Three child processes then ingest the same ids together.
 *
 * On Redis a batch is one script (claims, record and outbox entry together), so no such claim is
 * left there by a kill (test/system/redis-crash.processes.test.ts); the dead core here, whose
 * records are on another driver, uses the claim protocol, as an instance of an earlier version
 * would, and the children's script takes its stale claims over.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { createStorage, defineDriver, type Storage } from 'unstorage'
import redisDriver from 'unstorage/drivers/redis'
import { afterAll, describe, expect, it } from 'vitest'
import { createEventIngest, fsDriver } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { storedCounts as countsOf } from '../helpers/stored'
import { startTs } from '../helpers/process'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'

const childScript = fileURLToPath(new URL('../helpers/takeover-process.ts', import.meta.url))
const IDS = 300
const PROCESSES = 3
// The children's storageTimeoutMs is 1000: claims are stale after 4 s.
const STALE_AFTER_MS = 4000

const live = new Set<ReturnType<typeof startTs>>()
afterAll(async () => {
  for (const child of live) child.proc.kill('SIGKILL')
  await Promise.all([...live].map((child) => child.closed))
})

/** A driver whose writes never finish: batch records sent to it are never stored. */
const blackHole = defineDriver(() => ({
  name: 'black-hole',
  hasItem: () => false,
  getItem: () => null,
  setItem: () => new Promise<void>(() => {}),
  setItemRaw: () => new Promise<void>(() => {}),
  removeItem: () => {},
  getKeys: () => [],
  clear: () => {},
}))

/** Claims every id on `storage` for batches that are never written, as an instance dying between claim and write does. */
async function leaveClaimsBehind(storage: Storage, idPrefix: string) {
  storage.mount('events:b', blackHole(undefined))
  const dead = createEventIngest({ env: {}, storage, instanceId: 'dead', storageTimeoutMs: 100, onError: () => {} })
  try {
    for (let b = 0; b < IDS / 50; b++) {
      const events = Array.from({ length: 50 }, (_, i) => makeEvent({ id: `${idPrefix}-${b * 50 + i}` }))
      await expect(dead.ingest(events)).rejects.toMatchObject({ status: 503 })
    }
  } finally {
    await dead.close()
    await storage.unmount('events:b', false)
  }
}

/** Starts the children, lets the claims go stale, starts them all at once; resolves their totals. */
async function race(storageArg: string, redisBase: string, idPrefix: string) {
  const children = Array.from({ length: PROCESSES }, (_, i) => {
    const child = startTs(childScript, [storageArg, redisBase, idPrefix, String(IDS), `taker_${i}`])
    live.add(child)
    return child
  })
  await Promise.all(children.map((child) => child.waitForLine((line) => line === 'READY')))
  await sleep(STALE_AFTER_MS + 500)
  const start = Date.now() + 200
  for (const child of children) child.proc.stdin.write(`${start}\n`)
  const lines = await Promise.all(children.map((child) => child.waitForLine((line) => line.startsWith('{'))))
  await Promise.all(children.map((child) => child.closed))
  return lines.map((line) => JSON.parse(line) as { accepted: number; duplicates: number; unavailable: Record<string, number> })
}

/** How many stored copies each id has. */
async function storedCounts(storage: Storage): Promise<Map<string, number>> {
  const reader = createEventIngest({ env: {}, storage, instanceId: 'reader' })
  try {
    return await countsOf(reader)
  } finally {
    await reader.close()
  }
}

function expectEachStoredOnce(totals: { accepted: number; duplicates: number }[], counts: Map<string, number>, idPrefix: string) {
  const copies = [...counts.values()].reduce((a, b) => a + b, 0)
  const twice = [...counts].filter(([, n]) => n > 1).length
  expect({ copies, idsStoredMoreThanOnce: twice }).toEqual({ copies: IDS, idsStoredMoreThanOnce: 0 })
  for (let i = 0; i < IDS; i++) expect(counts.get(`${idPrefix}-${i}`), `${idPrefix}-${i}`).toBe(1)
  // Each id accepted by one process, a duplicate for the others.
  expect(totals.reduce((n, t) => n + t.accepted, 0)).toBe(IDS)
  expect(totals.reduce((n, t) => n + t.duplicates, 0)).toBe(IDS * (PROCESSES - 1))
}

describe('stale claims taken over by several processes at once', () => {
  it(`fs: ${PROCESSES} processes on one directory store each of ${IDS} ids once`, { timeout: 90_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ei-takeover-'))
    try {
      const storage = createStorage({ driver: fsDriver({ base: dir }) })
      await leaveClaimsBehind(storage, 'fs-stale')
      const totals = await race(`fs:${dir}`, '-', 'fs-stale')
      expectEachStoredOnce(totals, await storedCounts(storage), 'fs-stale')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it(`redis: ${PROCESSES} processes on one key prefix store each of ${IDS} ids once`, { timeout: 90_000 }, async () => {
    await requireRedis()
    const prefix = uniquePrefix('takeover')
    const storage = createStorage({ driver: redisDriver({ url: redisUrl, base: prefix }) })
    try {
      await leaveClaimsBehind(storage, 'redis-stale')
      const totals = await race(redisUrl, prefix, 'redis-stale')
      expectEachStoredOnce(totals, await storedCounts(storage), 'redis-stale')
    } finally {
      await storage.dispose()
      await deletePrefix(prefix)
    }
  })
})
