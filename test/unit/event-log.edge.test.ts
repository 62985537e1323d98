import { describe, expect, it } from 'vitest'
import { createStorage, defineDriver } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { createEventIngest, parseBatchBytes } from 'event-ingest'
import { idKey } from '../../src/storage/layout'
import { memoryWith } from '../helpers/drivers'
import { makeEvent } from '../helpers/fixtures'
import { startSink, waitFor } from '../helpers/sink'

type Ingest = ReturnType<typeof createEventIngest>

/** A retry of `event` is told it is a duplicate, and the store lists that one event, once. */
async function expectStoredOnce(ingest: Ingest, event: ReturnType<typeof makeEvent>) {
  expect(await ingest.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
  expect((await ingest.events({ since: 0 })).events.map((e) => e.id)).toEqual([event.id])
}

/**
 * A memory driver (its claims stay atomic, in process) whose batch writes, batch reads and removals
 * fail while `failing()` says so: a failed batch write cannot be read back, so its claims stay.
 */
function failingMemory(failing: () => boolean) {
  const inner = memoryDriver()
  return defineDriver(() => ({
    ...inner,
    // Keeps the atomic in-process claims of the memory driver.
    name: 'memory',
    async getItem(key: string) {
      if (failing() && key.startsWith('events:b:')) throw new Error('disk gone')
      return inner.getItem!(key, {})
    },
    async setItem(key: string, value: string) {
      if (failing() && key.startsWith('events:b:')) throw new Error('disk full')
      return inner.setItem!(key, value, {})
    },
    async setItemRaw(key: string, value: unknown) {
      if (failing() && key.startsWith('events:b:')) throw new Error('disk full')
      return inner.setItemRaw!(key, value, {})
    },
    async removeItem(key: string) {
      if (failing()) throw new Error('disk full')
      return inner.removeItem!(key, {})
    },
  }))(undefined)
}

/**
 * A driver over a Map with atomic claims in the shape of event-ingest's fs driver, whose
 * `setIfAbsent` the test times; `setItem` and `removeItem` (a claim's release) may be replaced too.
 */
function timedClaims(
  setIfAbsent: (data: Map<string, unknown>, key: string, value: string) => Promise<string | null>,
  setItem: (data: Map<string, unknown>, key: string, value: string) => Promise<void> | void = (data, key, value) => void data.set(key, value),
  removeItem: (data: Map<string, unknown>, key: string) => Promise<void> | void = (data, key) => void data.delete(key),
) {
  const data = new Map<string, unknown>()
  return defineDriver(() => ({
    name: 'event-ingest-fs',
    hasItem: (key: string) => data.has(key),
    getItem: (key: string) => data.get(key) ?? null,
    setItem: (key: string, value: string) => setItem(data, key, value),
    removeItem: (key: string) => removeItem(data, key),
    getKeys: (base: string) => [...data.keys()].filter((key) => key.startsWith(base)),
    clear: () => data.clear(),
    // The fs driver's claim of a batch: each key checked and answered on its own, all at once.
    getInstance: () => ({ setIfAbsentAll: (keys: string[], value: string) => Promise.all(keys.map((key) => setIfAbsent(data, key, value))) }),
  }))(undefined)
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A memory driver whose `setItem` goes through `hook`, which decides when and whether to call
 * `write`. Named anything but 'memory', batch records are written as text through `setItem`; named
 * 'memory', it keeps the memory driver's in-process claims (and its bytes path for records).
 */
function hookedMemory(name: string, hook: (key: string, write: () => Promise<void>) => Promise<void>) {
  const memory = memoryDriver()
  return defineDriver(() => ({
    ...memory,
    name,
    setItem: (key: string, value: string) => hook(key, async () => memory.setItem!(key, value, {})),
  }))(undefined)
}

/** A {@link hookedMemory} whose next batch write, once `slow.armed`, takes `ms` longer. */
function slowNextBatchWrite(ms: number, slow = { armed: true }) {
  return hookedMemory('slow', async (key, write) => {
    if (slow.armed && key.startsWith('events:b:')) {
      slow.armed = false
      await pause(ms)
    }
    return write()
  })
}

/**
 * An ingest on {@link failingMemory} whose write of `event` failed and could not be read back, so
 * its claim stays behind, and another instance on the same storage, which cannot know that batch's
 * outcome (the one that made it would take its claim over as soon as it has settled it); storage
 * works again when this resolves.
 */
async function withClaimLeftBehind(event: Record<string, unknown>) {
  let failing = true
  const storage = createStorage({ driver: failingMemory(() => failing) })
  const first = createEventIngest({ env: {}, storage, storageTimeoutMs: 50 })
  await expect(first.ingest([event])).rejects.toMatchObject({ code: 'storage_unavailable' })
  failing = false
  await first.close()
  return createEventIngest({ env: {}, storage, storageTimeoutMs: 50 })
}

/** A {@link hookedMemory} whose first `failures.left` outbox writes fail. */
function flakyOutbox(failures: { left: number }) {
  return hookedMemory('flaky-outbox', async (key, write) => {
    if (key.startsWith('events:o:') && failures.left > 0) {
      failures.left--
      throw new Error('connection reset')
    }
    return write()
  })
}

describe('EventLog edge cases', () => {
  it('writes batch records as text to a driver mounted under the batches that cannot keep bytes', async () => {
    // Memory at the root, a text-only driver (no setItemRaw) for the batch records.
    const texts = new Map<string, string>()
    const textOnly = defineDriver(() => ({
      name: 'text-only',
      hasItem: (key: string) => texts.has(key),
      getItem: (key: string) => texts.get(key) ?? null,
      setItem: (key: string, value: string) => void texts.set(key, value),
      removeItem: (key: string) => void texts.delete(key),
      getKeys: () => [...texts.keys()],
      clear: () => texts.clear(),
    }))
    const storage = createStorage({ driver: memoryDriver() })
    storage.mount('events:b', textOnly({}))
    const ingest = createEventIngest({ env: {}, storage })
    try {
      const events = [makeEvent({ id: 'mounted-1' }), makeEvent({ id: 'mounted-2' })]
      const parsed = parseBatchBytes(Buffer.from(JSON.stringify(events)), 32)
      expect(await ingest.ingest(parsed.value, { hints: parsed })).toMatchObject({ accepted: 2 })
      expect([...texts.values()].every((value) => typeof value === 'string' && value.startsWith('{"v":1'))).toBe(true)
      expect((await ingest.events()).events.map((e) => e.id).sort()).toEqual(['mounted-1', 'mounted-2'])
      expect(ingest.log!.corruptRecords).toBe(0)
    } finally {
      await ingest.close()
    }
  })

  it('hands the body it received to a memory storage as is: its own bytes when owned, a copy when not', async () => {
    const storage = createStorage({ driver: memoryDriver() })
    const ingest = createEventIngest({ env: {}, storage })
    try {
      const stored = async () => {
        const keys = (await storage.getKeys('events:b')).filter((key) => !keys0.has(key))
        for (const key of keys) keys0.add(key)
        expect(keys).toHaveLength(1)
        return storage.getItemRaw(keys[0]!)
      }
      const keys0 = new Set<string>()
      // Buffers of their own (not slices of Node's pool), as a request's body would be.
      const ownedBytes = new TextEncoder().encode(JSON.stringify([makeEvent({ id: 'own-1' }), makeEvent({ id: 'own-2' })]))
      const owned = parseBatchBytes(ownedBytes, 32, 0, true)
      expect(await ingest.ingest(owned.value, { hints: owned })).toMatchObject({ accepted: 2 })
      expect(await stored()).toBe(ownedBytes)
      const lentBytes = new TextEncoder().encode(JSON.stringify([makeEvent({ id: 'lent-1' })]))
      const lent = parseBatchBytes(lentBytes, 32)
      expect(await ingest.ingest(lent.value, { hints: lent })).toMatchObject({ accepted: 1 })
      const copy = await stored()
      expect(copy).not.toBe(lentBytes)
      expect(Buffer.from(copy as Uint8Array).equals(Buffer.from(lentBytes))).toBe(true)
      expect((await ingest.events()).events.map((e) => e.id).sort()).toEqual(['lent-1', 'own-1', 'own-2'])
    } finally {
      await ingest.close()
    }
  })

  it('never stores a second copy when a slow write times out and the client retries', async () => {
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: slowNextBatchWrite(300) }), storageTimeoutMs: 100 })
    try {
      const event = makeEvent({ id: 'once' })
      await expect(ingest.ingest([event])).rejects.toMatchObject({ status: 503 })
      // The late write lands (at 300 ms) and stays: a request reading it meanwhile was told it is
      // stored. The retry must not add a copy next to it.
      await waitFor(async () => (await ingest.events({ since: 0 })).events.length === 1, 5000, 'the late record')
      await pause(100)
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id)).toEqual(['once'])
      const retry = await ingest.ingest([event])
      expect(retry).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
      const page = await ingest.events({ limit: 100, since: 0 })
      expect(page.events.map((e) => e.id)).toEqual(['once'])
    } finally {
      await ingest.close()
    }
  })

  it('answers a retry 503 in_progress while the timed-out write of this process may still land, then duplicate once it has', async () => {
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: slowNextBatchWrite(600) }), storageTimeoutMs: 100 })
    try {
      const event = makeEvent({ id: 'pending-write' })
      await expect(ingest.ingest([event])).rejects.toMatchObject({ code: 'storage_unavailable' })
      // The write is still pending (it lands at 600 ms): the batch is not settled, so its claim is
      // not judged final even though no record is there yet. Taking it over would store a copy
      // next to the one about to land.
      await expect(ingest.ingest([event])).rejects.toMatchObject({ code: 'in_progress', status: 503 })
      await waitFor(async () => (await ingest.events({ since: 0 })).events.length === 1, 5000, 'the late record')
      await expectStoredOnce(ingest, event)
    } finally {
      await ingest.close()
    }
  })

  it('judges whether a batch of this process is settled before reading its record, not after', async () => {
    // The batch write lands at 450 ms; a batch record read answers what was there when it ran,
    // 150 ms later. A's request answers 503 at about 400 ms (a timeout, then the wait once more).
    let slowWrite = true
    const laggy = memoryWith('laggy', (memory) => ({
      async setItem(key, value) {
        if (slowWrite && key.startsWith('events:b:')) {
          slowWrite = false
          await pause(450)
        }
        return memory.setItem!(key, value, {})
      },
      async getItem(key) {
        const value = await memory.getItem!(key, {})
        if (key.startsWith('events:b:')) await pause(150)
        return value
      },
    }))
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: laggy }), storageTimeoutMs: 200 })
    try {
      const event = makeEvent({ id: 'read-then-settled' })
      await expect(ingest.ingest([event])).rejects.toMatchObject({ code: 'storage_unavailable' })
      // B reads the record before A's write lands and gets "absent" after it has landed and A is
      // settled: judged after the read, A would look final and its id free, and B would store a
      // second copy.
      const retry = await ingest.ingest([event]).catch((error: { code?: string }) => error.code)
      expect(retry === 'in_progress' || (typeof retry === 'object' && retry.duplicates === 1), `the retry answered ${JSON.stringify(retry)}`).toBe(true)
      await pause(200)
      await expectStoredOnce(ingest, event)
    } finally {
      await ingest.close()
    }
  })

  it('keeps an hour in the index when a batch lands in it while prune empties it', async () => {
    let onRemove: (() => Promise<void>) | undefined
    const hooked = memoryWith('memory', (memory) => ({
      async removeItem(key) {
        await memory.removeItem!(key, {})
        const hook = onRemove
        onRemove = undefined
        await hook?.()
      },
    }))
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: hooked }) })
    try {
      const hourAgo = Date.now() - 2 * 3_600_000
      await ingest.ingest([makeEvent({ id: 'pruned-away' })], { receivedAt: hourAgo })
      // Right after prune removes that hour's only batch, another is written into the same hour
      // (an old receive time; the hour is indexed already, so the append does not index it again).
      onRemove = async () => {
        await ingest.ingest([makeEvent({ id: 'landed-meanwhile' })], { receivedAt: hourAgo + 1 })
      }
      expect(await ingest.prune({ olderThan: Date.now() - 3_600_000 })).toMatchObject({ batches: 1 })
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id)).toEqual(['landed-meanwhile'])
      // Still indexed, so a later prune finds it too.
      expect(await ingest.prune({ olderThan: Date.now() - 3_600_000 })).toMatchObject({ batches: 1 })
    } finally {
      await ingest.close()
    }
  })

  it('treats claims of an earlier process with the same instanceId (a restart) as another instance\'s', async () => {
    const storage = createStorage({ driver: slowNextBatchWrite(400) })
    const before = createEventIngest({ env: {}, storage, instanceId: 'stable_id', storageTimeoutMs: 1000 })
    let after: ReturnType<typeof createEventIngest> | undefined
    try {
      const event = makeEvent({ id: 'restart-same-id' })
      // The earlier process has claimed the id and its write is still on its way (it lands at 400 ms).
      const first = before.ingest([event])
      await pause(50)
      after = createEventIngest({ env: {}, storage, instanceId: 'stable_id', storageTimeoutMs: 1000 })
      // The later one cannot know that batch's outcome, though the batch key names its instance.
      await expect(after.ingest([event])).rejects.toMatchObject({ code: 'in_progress' })
      expect(await first).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      await expectStoredOnce(after, event)
    } finally {
      await before.close()
      await after?.close()
    }
  })

  it('does not take over a claim of this process whose release is still running past the storage timeout', async () => {
    // Claims as a read then a write (no atomic claims on this driver): a release reads the claim,
    // then removes it, 300 ms later here. Taken over in between, the new claim would be removed.
    let failWrite = true
    const slowRelease = memoryWith('slow-release', (memory) => ({
      async setItem(key, value) {
        if (failWrite && key.startsWith('events:b:')) {
          failWrite = false
          throw new Error('disk full')
        }
        return memory.setItem!(key, value, {})
      },
      async removeItem(key) {
        if (key.startsWith('events:d:')) await pause(300)
        return memory.removeItem!(key, {})
      },
    }))
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: slowRelease }), storageTimeoutMs: 100 })
    try {
      const event = makeEvent({ id: 'slow-release' })
      // Not stored (read back absent): its claim is let go, a release that outlives the request.
      await expect(ingest.ingest([event])).rejects.toMatchObject({ code: 'storage_unavailable' })
      await expect(ingest.ingest([event])).rejects.toMatchObject({ code: 'in_progress' })
      await waitFor(async () => (await ingest.ingest([event]).catch(() => undefined))?.accepted === 1, 3000, 'the retry stored')
      await pause(400)
      await expectStoredOnce(ingest, event)
    } finally {
      await ingest.close()
    }
  })

  it('lists every batch when concurrent appends straddle an hour boundary', async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const ingest = createEventIngest({ env: {} })
      try {
        const boundary = Date.UTC(2026, 0, 1, 11)
        await Promise.all([
          ingest.ingest([makeEvent({ id: 'before' })], { receivedAt: boundary - 1 }),
          ingest.ingest([makeEvent({ id: 'after' })], { receivedAt: boundary + 1 }),
        ])
        const page = await ingest.events({ since: boundary - 3_600_000, until: boundary + 3_600_000 })
        expect(page.events.map((e) => e.id).sort()).toEqual(['after', 'before'])
      } finally {
        await ingest.close()
      }
    }
  })

  it('stores an id repeated within a batch once on a driver without atomic claims', async () => {
    const inner = memoryDriver()
    const plain = defineDriver(() => ({ ...inner, name: 'plain', getInstance: undefined }))
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: plain() }) })
    try {
      const a = makeEvent({ id: 'plain-a' })
      expect(await ingest.ingest([a, makeEvent({ id: 'plain-b' }), a, a])).toEqual({ accepted: 2, duplicates: 2, rejected: [] })
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id).sort()).toEqual(['plain-a', 'plain-b'])
      expect(ingest.log!.atomicDedupe).toBe(false)
    } finally {
      await ingest.close()
    }
  })

  it('lets neither of two batches whose claims interleave wait for the other (wait-die)', async () => {
    const inner = memoryDriver()
    let claimReads = 0
    const interleaving = defineDriver(() => ({
      ...inner,
      name: 'interleaving',
      getInstance: undefined,
      async getItem(key: string) {
        // Claims read then write here. The first batch's read of its 2nd id and the second batch's
        // read of its 2nd id come late: each then finds the id the other one took meanwhile.
        if (key.startsWith('events:d:')) {
          const n = ++claimReads
          if (n === 2 || n === 4) await new Promise((resolve) => setTimeout(resolve, 40))
        }
        return inner.getItem!(key, {})
      },
    }))
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: interleaving() }), storageTimeoutMs: 1000 })
    try {
      const [a, b] = [makeEvent({ id: 'wd-a' }), makeEvent({ id: 'wd-b' })]
      const started = Date.now()
      const [first, second] = await Promise.all([ingest.ingest([a, b]), ingest.ingest([b, a])])
      expect(first).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
      expect(second).toEqual({ accepted: 0, duplicates: 2, rejected: [] })
      // No wait ran into the storage timeout.
      expect(Date.now() - started).toBeLessThan(900)
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id).sort()).toEqual(['wd-a', 'wd-b'])
    } finally {
      await ingest.close()
    }
  })

  it('stores an id once when two batches of one process carry it on a driver without atomic claims', async () => {
    const inner = memoryDriver()
    const plain = defineDriver(() => ({ ...inner, name: 'plain', getInstance: undefined }))
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: plain() }) })
    try {
      const a = makeEvent({ id: 'plain-twice' })
      const results = await Promise.all([ingest.ingest([a]), ingest.ingest([a]), ingest.ingest([makeEvent({ id: 'plain-other' }), a])])
      expect(results.reduce((n, r) => n + r.accepted, 0)).toBe(2)
      expect(results.reduce((n, r) => n + r.duplicates, 0)).toBe(2)
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id).sort()).toEqual(['plain-other', 'plain-twice'])
    } finally {
      await ingest.close()
    }
  })

  it('does not wait for a batch that let go of its claims after they were read (no lost wake-up)', async () => {
    // Atomic claims (the shape of event-ingest's fs driver) whose check and answer are timed: the
    // older batch reads its 2nd id late, after the younger one took it; the younger one finds the
    // older holding its 2nd id, lets go of what it holds and waits; the older one's answer, read
    // before that, still shows the younger holding the id.
    const timing = [[0, 0], [5, 60], [0, 0], [0, 20]]
    let calls = 0
    const timed = timedClaims(async (data, key, value) => {
      const [check, answer] = timing[calls++] ?? [0, 0]
      await pause(check!)
      const existing = (data.get(key) as string | undefined) ?? null
      if (existing === null) data.set(key, value)
      await pause(answer!)
      return existing
    })
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: timed }), storageTimeoutMs: 1000 })
    try {
      const [a, x] = [makeEvent({ id: 'wake-a' }), makeEvent({ id: 'wake-x' })]
      const started = Date.now()
      const [older, younger] = await Promise.all([ingest.ingest([a, x]), ingest.ingest([x, a])])
      expect(older).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
      expect(younger).toEqual({ accepted: 0, duplicates: 2, rejected: [] })
      expect(Date.now() - started).toBeLessThan(700)
    } finally {
      await ingest.close()
    }
  })

  it('does not wait for an older batch that finished while this one let go of its claims', async () => {
    // The younger batch holds `b` and finds `a` held by the older one, still writing: it lets go
    // of `b` (slow, 60 ms), and the older batch is stored meanwhile (its write takes 30 ms).
    const claimFree = (data: Map<string, unknown>, key: string, value: string) => {
      const existing = (data.get(key) as string | undefined) ?? null
      if (existing === null) data.set(key, value)
      return Promise.resolve(existing)
    }
    const timed = timedClaims(
      claimFree,
      async (data, key, value) => {
        if (key.startsWith('events:b:')) await pause(30)
        data.set(key, value)
      },
      async (data, key) => {
        await pause(60)
        data.delete(key)
      },
    )
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: timed }), storageTimeoutMs: 2000 })
    try {
      const [a, b] = [makeEvent({ id: 'done-a' }), makeEvent({ id: 'done-b' })]
      const older = ingest.ingest([a])
      await pause(5)
      const started = Date.now()
      const younger = await ingest.ingest([b, a])
      expect(await older).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      expect(younger).toEqual({ accepted: 1, duplicates: 1, rejected: [] })
      // Not a wait until the storage timeout for a batch that was already done.
      expect(Date.now() - started).toBeLessThan(1000)
    } finally {
      await ingest.close()
    }
  })

  it('releases what a claim call that failed part way claimed, so a retry is not told to wait', async () => {
    // The batch's first id is claimed, the second fails (an I/O error): the call fails as a whole.
    let failOnce = true
    const timed = timedClaims(async (data, key, value) => {
      if (failOnce && key.endsWith(idKey('partial-b'))) {
        failOnce = false
        throw new Error('EIO: i/o error')
      }
      const existing = (data.get(key) as string | undefined) ?? null
      if (existing === null) data.set(key, value)
      return existing
    })
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: timed }), storageTimeoutMs: 1000 })
    try {
      const [a, b] = [makeEvent({ id: 'partial-a' }), makeEvent({ id: 'partial-b' })]
      await expect(ingest.ingest([a, b])).rejects.toMatchObject({ code: 'storage_unavailable' })
      // Released in the background, at once here. Without the release, `partial-a` would stay
      // claimed for a batch that was never stored, and the retry would get 503 in_progress until
      // the claim went stale (4 storage timeouts).
      await pause(20)
      expect(await ingest.ingest([a, b])).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
    } finally {
      await ingest.close()
    }
  })

  it('lets one batch of a process take a stale claim over when two find it at once', async () => {
    const event = makeEvent({ id: 'stale-twice' })
    const ingest = await withClaimLeftBehind(event)
    try {
      // Past 4 x storageTimeoutMs the claim is stale.
      await pause(260)
      const results = await Promise.allSettled([ingest.ingest([event]), ingest.ingest([event])])
      const accepted = results.reduce((n, r) => n + (r.status === 'fulfilled' ? r.value.accepted : 0), 0)
      expect(accepted).toBe(1)
      for (const result of results) {
        if (result.status === 'rejected') expect(result.reason).toMatchObject({ code: 'in_progress' })
        else expect(result.value.accepted + result.value.duplicates).toBe(1)
      }
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id)).toEqual(['stale-twice'])
    } finally {
      await ingest.close()
    }
  })

  it('claims again, instead of answering 503, when a batch of this process failed after its claim was read', async () => {
    // The second claim's answer comes 60 ms late: the first batch has failed and let go by then.
    const answerDelay = [0, 60]
    let calls = 0
    let failed = false
    const timed = timedClaims(
      async (data, key, value) => {
        const wait = answerDelay[calls++] ?? 0
        const existing = (data.get(key) as string | undefined) ?? null
        if (existing === null) data.set(key, value)
        await pause(wait)
        return existing
      },
      async (data, key, value) => {
        if (key.startsWith('events:b:') && !failed) {
          failed = true
          await pause(30)
          throw new Error('disk full')
        }
        data.set(key, value)
      },
    )
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: timed }), storageTimeoutMs: 1000 })
    try {
      const event = makeEvent({ id: 'late-answer' })
      const first = ingest.ingest([event])
      await pause(5)
      const second = ingest.ingest([event])
      await expect(first).rejects.toMatchObject({ code: 'storage_unavailable' })
      expect(await second).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id)).toEqual(['late-answer'])
    } finally {
      await ingest.close()
    }
  })

  it('fails concurrent requests together, not one storage timeout after another, when the hours index cannot be written', async () => {
    // Named 'memory': keeps the atomic in-process claims of the memory driver.
    const stuck = hookedMemory('memory', (key, write) => (key === 'events:hours' ? new Promise<void>(() => {}) : write()))
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: stuck }), storageTimeoutMs: 100 })
    try {
      const started = Date.now()
      const settled = await Promise.all(Array.from({ length: 8 }, (_, i) => ingest.ingest([makeEvent({ id: `hours-${i}` })]).then(
        () => ({ ok: true, at: Date.now() - started }),
        (error: { code?: string }) => ({ ok: false, code: error.code, at: Date.now() - started }),
      )))
      for (const outcome of settled) expect(outcome).toMatchObject({ ok: false, code: 'storage_unavailable' })
      // One after another, the last would fail after 8 timeouts (800 ms).
      expect(Math.max(...settled.map((o) => o.at))).toBeLessThan(450)
    } finally {
      await ingest.close()
    }
  })

  it('takes over a stale claim once when the batch repeats its id', async () => {
    const event = makeEvent({ id: 'stale' })
    const ingest = await withClaimLeftBehind(event)
    try {
      await expect(ingest.ingest([event])).rejects.toMatchObject({ code: 'in_progress' })
      // Past 4 x storageTimeoutMs the claim is stale and is taken over, once.
      await pause(260)
      expect(await ingest.ingest([event, makeEvent({ id: 'fresh' }), event])).toEqual({ accepted: 2, duplicates: 1, rejected: [] })
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id).sort()).toEqual(['fresh', 'stale'])
    } finally {
      await ingest.close()
    }
  })

  it('lets an overlapping retry through when the first write fails (no spinning, no lost event)', async () => {
    const inner = memoryDriver()
    let failNext = true
    const flaky = defineDriver(() => ({
      ...inner,
      // Keeps the atomic in-process claims of the memory driver.
      name: 'memory',
      async setItem(key: string, value: string) {
        await pause(5)
        if (key.startsWith('events:b:') && failNext) {
          failNext = false
          throw new Error('disk full')
        }
        return inner.setItem!(key, value, {})
      },
      async removeItem(key: string) {
        await pause(5)
        return inner.removeItem!(key, {})
      },
    }))
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: flaky() }), storageTimeoutMs: 1000 })
    try {
      const event = makeEvent({ id: 'overlap' })
      const [first, second] = await Promise.allSettled([ingest.ingest([event]), ingest.ingest([event])])
      expect(first).toMatchObject({ status: 'rejected', reason: { code: 'storage_unavailable' } })
      expect(second).toMatchObject({ status: 'fulfilled', value: { accepted: 1, duplicates: 0 } })
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id)).toEqual(['overlap'])
    } finally {
      await ingest.close()
    }
  }, 10_000)

  it('answers 200, and keeps the record another instance already reported as stored, when a write lands after the storage timeout', async () => {
    const slow = hookedMemory('slow', async (key, write) => {
      // Batch keys name their instance: only instance slow_a's writes are slow.
      if (key.startsWith('events:b:') && key.includes('-slow_a-')) await pause(300)
      return write()
    })
    const storage = createStorage({ driver: slow })
    const a = createEventIngest({ env: {}, storage, instanceId: 'slow_a', storageTimeoutMs: 200 })
    const b = createEventIngest({ env: {}, storage, instanceId: 'fast_b', storageTimeoutMs: 200 })
    try {
      const event = makeEvent({ id: 'late-but-whole' })
      const first = a.ingest([event])
      // A's write times out at 200 ms and lands at 300, when A answers.
      await waitFor(async () => (await storage.getKeys('events:b')).length === 1, 5000, "A's record")
      expect(await b.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
      expect(await first).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      await pause(100)
      expect((await b.events({ since: 0 })).events.map((e) => e.id)).toEqual(['late-but-whole'])
      expect((await a.stats()).totals).toMatchObject({ accepted: 1 })
    } finally {
      await a.close()
      await b.close()
    }
  }, 10_000)

  it('writes the outbox entry again when only it failed, instead of removing a stored record', async () => {
    const failures = { left: 1 }
    const storage = createStorage({ driver: flakyOutbox(failures) })
    // Nothing listens on port 9: the forwarder keeps the entry in the outbox, retrying.
    const ingest = createEventIngest({ env: {}, storage, sink: { url: 'http://127.0.0.1:9/sink' }, onError: () => {} })
    try {
      expect(await ingest.ingest([makeEvent({ id: 'outbox-again' })])).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      expect(failures.left).toBe(0)
      expect(await storage.getKeys('events:o')).toHaveLength(1)
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id)).toEqual(['outbox-again'])
    } finally {
      await ingest.close()
    }
  })

  it('counts and forwards a batch whose write lands only after its request answered 503', async () => {
    const slow = { armed: false }
    const sink = await startSink()
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: slowNextBatchWrite(400, slow) }), storageTimeoutMs: 100, sink: { url: sink.url } })
    try {
      // A first batch at the sink: the forwarder has started (its one scan of the outbox is over).
      await ingest.ingest([makeEvent({ id: 'before-late' })])
      await waitFor(() => sink.storedIds().includes('before-late'), 5000, 'the first batch at the sink')
      slow.armed = true
      const event = makeEvent({ id: 'landed-late' })
      // The write times out at 100 ms and is waited for until 200: still pending, so 503.
      await expect(ingest.ingest([event])).rejects.toMatchObject({ code: 'storage_unavailable' })
      // It lands at 400 ms: stored, so forwarded and counted, with no restart and no retry.
      await waitFor(() => sink.storedIds().includes('landed-late'), 5000, 'the late batch at the sink')
      expect((await ingest.stats()).totals).toMatchObject({ accepted: 2 })
      expect(await ingest.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
    } finally {
      await ingest.close()
      await sink.close()
    }
  }, 10_000)

  it('keeps a stored record whose outbox entry cannot be written, and writes the entry in the background', async () => {
    const failures = { left: 3 }
    const storage = createStorage({ driver: flakyOutbox(failures) })
    const ingest = createEventIngest({ env: {}, storage, storageTimeoutMs: 50, sink: { url: 'http://127.0.0.1:9/sink' }, onError: () => {} })
    try {
      const event = makeEvent({ id: 'outbox-later' })
      // The write and its one retry fail: 503, but the record stays (it may have been read as stored).
      await expect(ingest.ingest([event])).rejects.toMatchObject({ code: 'storage_unavailable' })
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id)).toEqual(['outbox-later'])
      expect(await ingest.ingest([event])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
      // The third write fails too; the next one, after a backoff, lands.
      await waitFor(async () => (await storage.getKeys('events:o')).length === 1, 5000, 'the outbox entry')
      expect(failures.left).toBe(0)
    } finally {
      await ingest.close()
    }
  }, 10_000)

  it('hands the outbox entry of a batch found not stored to the forwarder, which drops it without a restart', async () => {
    let failing = true
    const down = hookedMemory('down', async (key, write) => {
      if (failing && key.startsWith('events:b:')) {
        failing = false
        throw new Error('disk full')
      }
      return write()
    })
    const storage = createStorage({ driver: down })
    const sink = await startSink()
    const ingest = createEventIngest({ env: {}, storage, storageTimeoutMs: 25, sink: { url: sink.url } })
    try {
      await expect(ingest.ingest([makeEvent({ id: 'never-stored' })])).rejects.toMatchObject({ code: 'storage_unavailable' })
      // Read back as absent: its claim is released, its outbox entry stays (the record could land).
      expect(await storage.getKeys('events:o')).toHaveLength(1)
      expect(await ingest.ingest([makeEvent({ id: 'stored-next' })])).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      // Not held back by the orphan ahead of it (the forwarder's wait for a deliverable head ends).
      await waitFor(() => sink.storedIds().includes('stored-next'), 2000, 'the next batch at the sink')
      // The forwarder looks at the orphan again once 4 storage timeouts have passed since it was
      // received and, with still no record, drops it: not left until a restart.
      await waitFor(async () => (await storage.getKeys('events:o')).length === 0, 3000, 'the orphan outbox entry dropped')
      expect(sink.storedIds()).not.toContain('never-stored')
      expect((await ingest.stats()).forwarding).toMatchObject({ backlog: 0 })
    } finally {
      await ingest.close()
      await sink.close()
    }
  }, 15_000)

  it('forwards the batches behind as many orphan outbox entries as a group holds, without waiting for the orphans to go', async () => {
    // Two batches whose record writes fail leave two orphan outbox entries at the head of the
    // queue, and a group holds at most two batches here (maxBatchEvents: 2).
    let failures = 2
    const down = hookedMemory('down', async (key, write) => {
      if (failures > 0 && key.startsWith('events:b:')) {
        failures--
        throw new Error('disk full')
      }
      return write()
    })
    const storage = createStorage({ driver: down })
    const sink = await startSink()
    // Orphans are dropped 4 storage timeouts (4 s) after they were received.
    const ingest = createEventIngest({ env: {}, storage, storageTimeoutMs: 1000, sink: { url: sink.url, maxBatchEvents: 2 } })
    try {
      for (const id of ['orphan-1', 'orphan-2']) {
        await expect(ingest.ingest([makeEvent({ id })])).rejects.toMatchObject({ code: 'storage_unavailable' })
      }
      expect(await storage.getKeys('events:o')).toHaveLength(2)
      expect(await ingest.ingest([makeEvent({ id: 'behind-orphans' })])).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      await waitFor(() => sink.storedIds().includes('behind-orphans'), 2000, 'the batch behind the orphans at the sink')
      expect(sink.storedIds()).toEqual(['behind-orphans'])
      await waitFor(async () => (await storage.getKeys('events:o')).length === 0, 8000, 'the orphans dropped')
    } finally {
      await ingest.close()
      await sink.close()
    }
  }, 20_000)

  it('hands the outbox entry to the forwarder too when a batch is found not stored only in the background', async () => {
    let failing = true
    const storage = createStorage({ driver: failingMemory(() => failing) })
    const sink = await startSink()
    const ingest = createEventIngest({ env: {}, storage, storageTimeoutMs: 25, sink: { url: sink.url }, onError: () => {} })
    try {
      // The record write fails and cannot be read back: unknown, so settled in the background.
      await expect(ingest.ingest([makeEvent({ id: 'unknown-then-absent' })])).rejects.toMatchObject({ code: 'storage_unavailable' })
      expect(await storage.getKeys('events:o')).toHaveLength(1)
      failing = false
      await waitFor(async () => (await storage.getKeys('events:o')).length === 0, 3000, 'the orphan outbox entry dropped')
      expect(sink.storedIds()).toEqual([])
    } finally {
      await ingest.close()
      await sink.close()
    }
  }, 15_000)

  it('answers 200 for a record write that reported a failure but landed (read back)', async () => {
    let failAfterWrite = true
    const lying = hookedMemory('lying', async (key, write) => {
      await write()
      if (failAfterWrite && key.startsWith('events:b:')) {
        failAfterWrite = false
        // Like a client-side command timeout while the server still applies the write.
        throw new Error('Command timed out')
      }
    })
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: lying }), storageTimeoutMs: 100 })
    try {
      expect(await ingest.ingest([makeEvent({ id: 'landed-anyway' })])).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      expect((await ingest.events({ since: 0 })).events.map((e) => e.id)).toEqual(['landed-anyway'])
    } finally {
      await ingest.close()
    }
  })

  it('keeps writing the outbox entry of a stored batch in the background until it works', async () => {
    // The request's write and its retry fail, then six background attempts (10, 20, ... 320 ms apart).
    const failures = { left: 8 }
    const storage = createStorage({ driver: flakyOutbox(failures) })
    const ingest = createEventIngest({ env: {}, storage, storageTimeoutMs: 10, sink: { url: 'http://127.0.0.1:9/sink' }, onError: () => {} })
    try {
      await expect(ingest.ingest([makeEvent({ id: 'outbox-patient' })])).rejects.toMatchObject({ code: 'storage_unavailable' })
      await waitFor(async () => (await storage.getKeys('events:o')).length === 1, 8000, 'the outbox entry')
      expect(failures.left).toBe(0)
      expect((await ingest.stats()).totals).toMatchObject({ accepted: 1 })
    } finally {
      await ingest.close()
    }
  }, 15_000)

  it('makes a last attempt at a pending outbox entry on close', async () => {
    const failures = { left: 1_000_000 }
    const storage = createStorage({ driver: flakyOutbox(failures) })
    const errors: unknown[] = []
    const ingest = createEventIngest({ env: {}, storage, storageTimeoutMs: 50, sink: { url: 'http://127.0.0.1:9/sink' }, onError: (error) => errors.push(error) })
    await expect(ingest.ingest([makeEvent({ id: 'outbox-at-close' })])).rejects.toMatchObject({ code: 'storage_unavailable' })
    // Backing off by now (50, 100, 200 ... ms between attempts); storage recovers just before close.
    await pause(700)
    expect(await storage.getKeys('events:o')).toEqual([])
    failures.left = 0
    await ingest.close()
    expect(await storage.getKeys('events:o')).toHaveLength(1)
    expect(errors.some((error) => /not written yet, retrying/.test(String(error)))).toBe(true)
  }, 10_000)

  it('reads a record back until storage answers, when its write reported a failure', async () => {
    let readable = false
    const memory = memoryDriver()
    let failAfterWrite = true
    const unsure = defineDriver(() => ({
      ...memory,
      name: 'unsure',
      async setItem(key: string, value: string) {
        await memory.setItem!(key, value, {})
        if (failAfterWrite && key.startsWith('events:b:')) {
          failAfterWrite = false
          throw new Error('Command timed out')
        }
      },
      async getItem(key: string) {
        if (!readable && key.startsWith('events:b:')) throw new Error('Connection is closed')
        return memory.getItem!(key, {})
      },
    }))(undefined)
    const ingest = createEventIngest({ env: {}, storage: createStorage({ driver: unsure }), storageTimeoutMs: 20, onError: () => {} })
    try {
      // Stored, but neither the write nor the read-back can tell: 503.
      await expect(ingest.ingest([makeEvent({ id: 'unsure' })])).rejects.toMatchObject({ code: 'storage_unavailable' })
      expect((await ingest.stats()).totals).toMatchObject({ accepted: 0 })
      readable = true
      // Read back in the background once storage answers: counted as stored.
      await waitFor(async () => (await ingest.stats()).totals.accepted === 1, 5000, 'the batch counted')
      expect(await ingest.ingest([makeEvent({ id: 'unsure' })])).toEqual({ accepted: 0, duplicates: 1, rejected: [] })
    } finally {
      await ingest.close()
    }
  }, 10_000)
})
