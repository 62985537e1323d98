/**
 * DESIGN §6, leases across real processes: an expired delivery lease is taken over by exactly one
 * instance. Several child processes (test/helpers/lease-race-process.ts) start their forwarders at
 * the same moment on one storage (shared Redis under its own prefix, one fs directory) whose outbox
 * holds many batches of an instance gone from the registry, each under a lease that has expired;
 * all of them adopt the whole outbox and race for the same leases. The loopback sink counts who
 * delivered what: every event arrives exactly once per round (no lease runs out during the test).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createStorage, type Storage } from 'unstorage'
import redisDriver from 'unstorage/drivers/redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest, type SinkOptions, type StorageOption } from '../../src/index'
import { fsDriver } from '../../src/storage/fs-driver'
import { makeEvent } from '../helpers/fixtures'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'
import { startSink, waitFor } from '../helpers/sink'

const projectRoot = fileURLToPath(new URL('../..', import.meta.url))
const childScript = fileURLToPath(new URL('../helpers/lease-race-process.ts', import.meta.url))

const PROCESSES = 5
const BATCHES = 150
const ROUNDS = 2
/** Long enough that no lease taken in a round runs out before the round ends. */
const LEASE_MS = 60_000

const children = new Set<ChildProcessWithoutNullStreams>()
const dirs: string[] = []
const prefixes: string[] = []
const report: string[] = []

beforeAll(async () => {
  await requireRedis()
})

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL')
  await Promise.allSettled(prefixes.map((prefix) => deletePrefix(prefix)))
  await Promise.allSettled(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  if (report.length > 0) console.info(`[forwarding.leases]\n  ${report.join('\n  ')}`)
})

/** A child that prints READY, starts its forwarder at the moment written to it, and closes on the next line. */
async function startChild(config: { storage: StorageOption; instanceId: string; sink: SinkOptions }) {
  const proc = spawn(process.execPath, ['--import', 'tsx', childScript, JSON.stringify(config)], { cwd: projectRoot, stdio: 'pipe' })
  children.add(proc)
  let out = ''
  let err = ''
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk))
  const closed = new Promise<void>((resolve) => proc.on('close', () => resolve()))
  const line = (text: string) => waitFor(() => out.includes(`${text}\n`) || proc.exitCode !== null, 30_000, `${config.instanceId} ${text}`).then(() => {
    if (!out.includes(`${text}\n`)) throw new Error(`${config.instanceId} exited before ${text}:\n${err}`)
  })
  await line('READY')
  return {
    start: (at: number) => proc.stdin.write(`${at}\n`),
    started: () => line('STARTED'),
    async close() {
      proc.stdin.write('CLOSE\n')
      await closed
      children.delete(proc)
      expect(out, `${config.instanceId} closed:\n${err}`).toContain('CLOSED\n')
    },
  }
}

/**
 * One round: an instance stores BATCHES batches and goes away (its forwarder never reaches the
 * sink), each of its outbox entries is left under a lease that expired a second ago, then
 * PROCESSES instances start together and take them over. Resolves each event id's deliveries.
 */
async function round(storage: StorageOption, planting: Storage, label: string): Promise<{ ids: string[]; counts: Map<string, number>; senders: Set<string> }> {
  const gone = `gone_${label}`
  const core = createEventIngest({ env: {}, storage, instanceId: gone, sink: { url: 'http://127.0.0.1:9/unreachable', timeoutMs: 1000, minBackoffMs: 60_000, maxBackoffMs: 60_000 }, onError: () => {} })
  await core.ready()
  const ids: string[] = []
  await Promise.all(Array.from({ length: BATCHES }, async (_, i) => {
    const event = makeEvent({ id: `${label}-${i}` })
    const result = await core.ingest([event])
    expect(result.accepted).toBe(1)
    ids.push(event.id as string)
  }))
  await core.close()
  const outbox = await planting.getKeys('events:o')
  expect(outbox).toHaveLength(BATCHES)
  const expired = `${gone}|${Date.now() - 1000}`
  for (const key of outbox) await planting.setItem(`events:l:${key.slice('events:o:'.length)}`, expired)

  const sink = await startSink()
  try {
    const sinkOptions = (from: string): SinkOptions => ({ url: sink.url, headers: { 'x-from': from }, timeoutMs: 5000, leaseMs: LEASE_MS, heartbeatMs: 30_000, maxBatchEvents: 10 })
    const racers = await Promise.all(Array.from({ length: PROCESSES }, (_, i) => startChild({ storage, instanceId: `${label}_racer${i}`, sink: sinkOptions(`racer${i}`) })))
    const at = Date.now() + 300
    for (const racer of racers) racer.start(at)
    await Promise.all(racers.map((racer) => racer.started()))
    await waitFor(() => new Set(sink.storedIds()).size >= BATCHES, 30_000, 'every event delivered')
    // Closing waits for each instance's attempt in flight: a second delivery would be in by then.
    await Promise.all(racers.map((racer) => racer.close()))
    const counts = new Map<string, number>()
    for (const id of sink.storedIds()) counts.set(id, (counts.get(id) ?? 0) + 1)
    const senders = new Set(sink.stored.map((request) => String(request.headers['x-from'])))
    return { ids, counts, senders }
  } finally {
    await sink.close()
  }
}

describe.each([
  ['redis', async () => {
    const base = uniquePrefix('fwd-leases')
    prefixes.push(base)
    const storage: StorageOption = { driver: 'redis', url: redisUrl, base }
    return { storage, planting: createStorage({ driver: redisDriver({ url: redisUrl, base }) }) }
  }],
  ['fs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ei-fwd-leases-'))
    dirs.push(dir)
    const storage: StorageOption = { driver: 'fs', base: dir, fsync: false }
    return { storage, planting: createStorage({ driver: fsDriver({ base: dir, fsync: false }) }) }
  }],
] as const)('expired leases taken over by racing processes on %s', (name, open) => {
  it(`delivers each of ${BATCHES} batches once per round, ${PROCESSES} processes racing`, async () => {
    const { storage, planting } = await open()
    try {
      for (let r = 0; r < ROUNDS; r++) {
        const { ids, counts, senders } = await round(storage, planting, `${name}${r}`)
        const twice = [...counts].filter(([, n]) => n > 1).map(([id, n]) => `${id}×${n}`)
        report.push(`${name} round ${r}: ${senders.size} instances delivered; ${twice.length} events delivered more than once${twice.length ? ` (${twice.slice(0, 5).join(' ')}…)` : ''}`)
        expect(ids.filter((id) => !counts.has(id)), 'events never delivered').toEqual([])
        expect(twice, 'events delivered by more than one instance').toEqual([])
      }
    } finally {
      await planting.dispose()
    }
  }, 120_000)
})
