import { createHash, randomInt } from 'node:crypto'
import { existsSync, readdirSync, utimesSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { createStorage, type Storage } from 'unstorage'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { fsDriver, removeStaleTempFiles, type FsDriverInstance } from '../../src/storage/fs-driver'
import { startTs } from '../helpers/process'
import { processIdentity } from '../../src/storage/process-identity'
import { spawn } from 'node:child_process'

const openFiles = vi.hoisted(() => ({ now: 0, max: 0 }))

// Pass-through spies on the fs module the driver imports. Vitest transforms the driver's source, so
// its `node:fs/promises` import resolves to this mock: readdir calls show which directories it
// lists, and open() counts the file handles it holds at once. (spyOn on an ESM namespace cannot
// work, and chmod 000 does not stop root, so this is the witness that does not depend on the host.)
vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>()
  return {
    ...actual,
    readdir: vi.fn(actual.readdir),
    readFile: vi.fn(actual.readFile),
    rename: vi.fn(actual.rename),
    stat: vi.fn(actual.stat),
    link: vi.fn(actual.link),
    unlink: vi.fn(actual.unlink),
    open: vi.fn(async (...args: Parameters<typeof actual.open>) => {
      const handle = await actual.open(...args)
      openFiles.max = Math.max(openFiles.max, ++openFiles.now)
      const close = handle.close.bind(handle)
      handle.close = () => {
        openFiles.now--
        return close()
      }
      return handle
    }),
  }
})

const helper = (name: string) => fileURLToPath(new URL(`../helpers/${name}`, import.meta.url))

let base: string
let storage: Storage

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'event-ingest-fs-'))
  storage = createStorage({ driver: fsDriver({ base }) })
})

afterEach(async () => {
  await storage.dispose()
  await rm(base, { recursive: true, force: true })
})

const sorted = (keys: string[]) => [...keys].sort()
const claimsOf = (target: Storage): FsDriverInstance => target.getMount('').driver.getInstance!()

describe('fsDriver: the unstorage surface', () => {
  it('round-trips set, get, has, remove, getKeys and clear', async () => {
    await storage.setItem('a:b:c', 'one')
    await storage.setItem('a:d', { n: 2 })
    await storage.setItem('top', 'three')

    expect(await storage.getItem('a:b:c')).toBe('one')
    expect(await storage.getItem('a:d')).toEqual({ n: 2 })
    expect(await storage.getItem('missing:key')).toBeNull()
    expect(await storage.hasItem('a:b:c')).toBe(true)
    expect(await storage.hasItem('a:b')).toBe(false)
    expect(await storage.hasItem('nope')).toBe(false)
    expect(sorted(await storage.getKeys())).toEqual(['a:b:c', 'a:d', 'top'])

    await storage.setItem('a:b:c', 'replaced')
    expect(await storage.getItem('a:b:c')).toBe('replaced')

    await storage.removeItem('a:b:c')
    await storage.removeItem('a:b:c')
    expect(await storage.hasItem('a:b:c')).toBe(false)
    expect(sorted(await storage.getKeys())).toEqual(['a:d', 'top'])

    await storage.clear()
    expect(await storage.getKeys()).toEqual([])
    expect(existsSync(base)).toBe(true)
  })

  it('keeps unicode keys and multi-line values byte for byte', async () => {
    const value = 'first line\nsecond line\r\nthird\n\n  indented — ünïcödé 日本語 😀\n'
    await storage.setItem('ünï:日本:😀', value)
    await storage.setItem('ünï:plain', 'x')
    expect(await storage.getItem('ünï:日本:😀')).toBe(value)
    expect(sorted(await storage.getKeys('ünï'))).toEqual(['ünï:plain', 'ünï:日本:😀'])
    expect(existsSync(join(base, 'ünï', '日本', '😀'))).toBe(true)
  })

  it('stores binary values with setItemRaw and serves them as Buffers', async () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i)
    await storage.setItemRaw('bin:all-bytes', bytes)
    const back = await storage.getItemRaw<Buffer>('bin:all-bytes')
    expect(Buffer.isBuffer(back)).toBe(true)
    expect(Buffer.compare(back!, Buffer.from(bytes))).toBe(0)
    expect(await storage.getItemRaw('bin:missing')).toBeNull()
  })

  it('refuses keys with "..", "." or empty segments with an [event-ingest-fs] error', async () => {
    const driver = fsDriver({ base })
    for (const key of ['a:..:b', '..', '../escape', 'a:.:b', 'a::b', ':a', 'a:', 'a\\..\\b']) {
      await expect(driver.setItem!(key, 'x', {}), key).rejects.toThrow(/^\[event-ingest-fs\] Invalid key/)
      await expect(Promise.resolve().then(() => driver.getItem(key)), key).rejects.toThrow(/^\[event-ingest-fs\]/)
      await expect(Promise.resolve().then(() => driver.hasItem(key, {})), key).rejects.toThrow(/^\[event-ingest-fs\]/)
      await expect(driver.getInstance!().setIfAbsent(key, 'x'), key).rejects.toThrow(/^\[event-ingest-fs\]/)
    }
    // Through createStorage unstorage refuses dot segments itself, before the driver sees them.
    await expect(storage.setItem('a:..:b', 'x')).rejects.toThrow()
    // Dots inside a segment are ordinary characters.
    await storage.setItem('a..b:c.d', 'fine')
    expect(await storage.getItem('a..b:c.d')).toBe('fine')
    expect(await readdir(base)).toEqual(['a..b'])
  })
})

describe('fsDriver: getKeys and clear stay below their base', () => {
  it('getKeys(base) reads only the directory of base, never its siblings', async () => {
    const readdirSpy = vi.mocked(readdir)
    await storage.setItem('a:b:c', '1')
    await storage.setItem('a:b:d:e', '2')
    await storage.setItem('a:b2:trap', '3') // shares the string prefix 'a:b', not the directory
    await storage.setItem('a:x:y', '4')
    await storage.setItem('top', '5')

    readdirSpy.mockClear()
    expect(sorted(await storage.getKeys('a:b'))).toEqual(['a:b:c', 'a:b:d:e'])
    const listed = readdirSpy.mock.calls.map(([dir]) => String(dir))
    const below = join(base, 'a', 'b')
    expect(listed.length, 'the spy sees the driver').toBeGreaterThan(0)
    for (const dir of listed) expect(dir === below || dir.startsWith(below + sep), dir).toBe(true)

    // The driver's own answer, without createStorage's filterKeyByBase in between.
    expect(sorted(await fsDriver({ base }).getKeys('a:b:', {}))).toEqual(['a:b:c', 'a:b:d:e'])
    expect(await storage.getKeys('a:nothing')).toEqual([])
    expect(await storage.getKeys('top')).toEqual([])
  })

  it('getKeys honours maxDepth, counted in ":" from the root as unstorage counts it', async () => {
    for (const key of ['top', 'a:one', 'a:b:two', 'a:b:c:three']) await storage.setItem(key, key)
    expect(await storage.getKeys('', { maxDepth: 0 })).toEqual(['top'])
    expect(sorted(await storage.getKeys('', { maxDepth: 1 }))).toEqual(['a:one', 'top'])
    expect(await storage.getKeys('a:b', { maxDepth: 2 })).toEqual(['a:b:two'])
    expect(await storage.getKeys('a:b', { maxDepth: 1 })).toEqual([])
  })

  it('clear(base) removes only below base', async () => {
    for (const key of ['a:b:c', 'a:b:d:e', 'a:b2:f', 'a:x', 'top']) await storage.setItem(key, key)
    // unstorage 1.17's storage.clear(base) only reaches drivers mounted at or below base, so with
    // one root driver it does nothing (unjs/unstorage#336, #801). Call the driver as it would.
    const { driver } = storage.getMount('a:b')
    await driver.clear!('a:b:', {})
    expect(sorted(await storage.getKeys())).toEqual(['a:b2:f', 'a:x', 'top'])
    expect(existsSync(join(base, 'a', 'b'))).toBe(false)

    await driver.clear!('top:', {}) // 'top' is an item, not below the base 'top:'
    expect(await storage.getItem('top')).toBe('top')

    await storage.clear()
    expect(await storage.getKeys()).toEqual([])
  })
})

describe('fsDriver: temp files', () => {
  it('never lists or serves temp files', async () => {
    await storage.setItem('a:b:c', 'committed')
    // What a writer killed mid-write leaves behind: a partial temp file beside the key's file.
    await writeFile(join(base, 'a', 'b', `.c.${process.pid}.0123456789ab.tmp`), 'comm')
    await writeFile(join(base, 'a', 'b', '.d.1.ffffffffffff.tmp'), '')

    expect(await storage.getKeys()).toEqual(['a:b:c'])
    expect(await storage.getKeys('a:b')).toEqual(['a:b:c'])
    expect(await storage.getItem('a:b:c')).toBe('committed')
    expect(await storage.hasItem('a:b:d')).toBe(false)
    await expect(storage.getItem('a:b:.d.1.ffffffffffff.tmp')).rejects.toThrow(/^\[event-ingest-fs\] .*reserved/)
    await expect(storage.setItem('a:b:.d.1.ffffffffffff.tmp', 'x')).rejects.toThrow(/^\[event-ingest-fs\]/)
  })

  it('leaves no temp file after writes, claims and failed writes', async () => {
    await storage.setItem('k:one', '1')
    await claimsOf(storage).setIfAbsent('k:two', '2')
    await claimsOf(storage).setIfAbsent('k:two', 'loser')
    await mkdir(join(base, 'k', 'dir-in-the-way'))
    await expect(storage.setItem('k:dir-in-the-way', 'x')).rejects.toThrow()
    expect(sorted(await readdir(join(base, 'k')))).toEqual(['dir-in-the-way', 'one', 'two'])
  })

  it('removeStaleTempFiles deletes only temp files older than the cutoff', async () => {
    await storage.setItem('a:b:c', 'keep')
    const stale = join(base, 'a', 'b', '.c.1.aaaaaaaaaaaa.tmp')
    const fresh = join(base, 'a', '.x.2.bbbbbbbbbbbb.tmp')
    await writeFile(stale, 'partial')
    await writeFile(fresh, 'in flight')
    const hourAgo = new Date(Date.now() - 3_600_000)
    await utimes(stale, hourAgo, hourAgo)

    expect(await removeStaleTempFiles(base, 60_000)).toBe(1)
    expect(existsSync(stale)).toBe(false)
    expect(existsSync(fresh)).toBe(true)
    expect(await storage.getItem('a:b:c')).toBe('keep')
    expect(await removeStaleTempFiles(join(base, 'does-not-exist'), 0)).toBe(0)
  })
})

describe('fsDriver: bounded resources', () => {
  it('never holds more than 64 files open under 1000 concurrent writes and reads', async () => {
    const fast = createStorage({ driver: fsDriver({ base, fsync: false }) })
    openFiles.max = 0
    await Promise.all(Array.from({ length: 1000 }, (_, i) => fast.setItem(`many:${i % 10}:${i}`, `v${i}`)))
    const values = await Promise.all(Array.from({ length: 1000 }, (_, i) => fast.getItem(`many:${i % 10}:${i}`)))
    expect(values.every((value, i) => value === `v${i}`)).toBe(true)
    expect(openFiles.max).toBeGreaterThan(1)
    expect(openFiles.max).toBeLessThanOrEqual(64)
    expect(openFiles.now).toBe(0)
  })

  it('dispose() waits for writes in flight', async () => {
    const writes = Array.from({ length: 100 }, (_, i) => storage.setItem(`flight:${i}`, `v${i}`))
    await storage.dispose()
    expect((await readdir(join(base, 'flight'))).length).toBe(100)
    await Promise.all(writes)
  })
})

/**
 * Four processes claim `claim:0` .. `claim:<count - 1>` at once (test/helpers/fs-claimer.ts, with
 * `extra(i)` for child i): each key must have exactly one winner, whose value everyone else saw.
 */
async function expectOneWinnerPerKey(count: number, extra: (i: number) => string[] = () => []) {
  const children = [0, 1, 2, 3].map((i) => startTs(helper('fs-claimer.ts'), [base, `p${i}`, String(count), ...extra(i)]))
  try {
    await Promise.all(children.map((child) => child.waitForLine((line) => line === 'READY')))
    for (const { proc } of children) proc.stdin.write('go\n')
    const results = await Promise.all(
      children.map(async (child) => JSON.parse(await child.waitForLine((line) => line.startsWith('['))) as (string | null)[]),
    )
    for (let k = 0; k < count; k++) {
      const column = results.map((result) => result[k])
      const winners = column.flatMap((result, i) => (result === null ? [i] : []))
      expect(winners, `claim:${k}`).toHaveLength(1)
      const winner = `p${winners[0]}`
      if (extra(0)[0] !== 'replace') expect(column.filter((result) => result !== null && result !== winner), `claim:${k}`).toEqual([])
      expect(await storage.getItem(`claim:${k}`)).toBe(winner)
    }
  } finally {
    for (const { proc } of children) proc.kill('SIGKILL')
  }
}

describe('fsDriver: setIfAbsent', () => {
  it('has exactly one winner among 50 concurrent claims, and everyone sees its value', async () => {
    const claims = claimsOf(storage)
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => claims.setIfAbsent('lock:job', `v${i}`)))
    const winners = results.flatMap((result, i) => (result === null ? [i] : []))
    expect(winners).toHaveLength(1)
    const winner = `v${winners[0]}`
    expect(results.filter((result) => result !== null && result !== winner)).toEqual([])
    expect(await storage.getItem('lock:job')).toBe(winner)
    expect(claims.base).toBe(base)
  })

  it("returns '' for an existing empty file, the caller's stale claim", async () => {
    await mkdir(join(base, 'lock'))
    await writeFile(join(base, 'lock', 'stale'), '')
    expect(await claimsOf(storage).setIfAbsent('lock:stale', 'me')).toBe('')
    expect(await claimsOf(storage).setIfAbsent('lock:fresh', 'me')).toBeNull()
  })

  it('has exactly one winner per key across 4 processes', async () => {
    await expectOneWinnerPerKey(200)
  })
})

describe('fsDriver: setIfAbsentAll', () => {
  it('claims many keys with one value, and answers a key already held with its value', async () => {
    const claims = claimsOf(storage)
    expect(await claims.setIfAbsentAll(['batch:a', 'batch:b', 'batch:c'], 'first')).toEqual([null, null, null])
    expect(await claims.setIfAbsentAll(['batch:c', 'batch:d'], 'second')).toEqual(['first', null])
    expect(await Promise.all(['a', 'b', 'c', 'd'].map((k) => storage.getItem(`batch:${k}`)))).toEqual(['first', 'first', 'first', 'second'])
    expect(sorted(await storage.getKeys('batch'))).toEqual(['batch:a', 'batch:b', 'batch:c', 'batch:d'])
    expect(await claims.setIfAbsentAll([], 'none')).toEqual([])
  })

  it('writes the value once for the whole call, not once per key', async () => {
    const open = vi.mocked((await import('node:fs/promises')).open)
    const before = open.mock.calls.length
    const keys = Array.from({ length: 50 }, (_, i) => `many:k${i}`)
    expect(await claimsOf(storage).setIfAbsentAll(keys, 'v')).toEqual(Array(50).fill(null))
    // The temp file for the value (opened again once its new directory is made), and the two
    // directories flushed; claimed one key at a time, that would be 50 temp files and more.
    expect(open.mock.calls.length - before).toBeLessThanOrEqual(4)
    expect(new Set(await Promise.all(keys.map((key) => storage.getItem(key))))).toEqual(new Set(['v']))
  })

  it('keeps every key its own: overwriting or removing one leaves the others', async () => {
    await claimsOf(storage).setIfAbsentAll(['own:1', 'own:2', 'own:3'], 'shared')
    await storage.setItem('own:1', 'taken over')
    await storage.removeItem('own:2')
    expect(await storage.getItem('own:1')).toBe('taken over')
    expect(await storage.getItem('own:2')).toBeNull()
    expect(await storage.getItem('own:3')).toBe('shared')
    expect(await claimsOf(storage).setIfAbsentAll(['own:2', 'own:3'], 'again')).toEqual([null, 'shared'])
  })

  it('claims keys in directories that do not exist yet, each durable under its own name', async () => {
    expect(await claimsOf(storage).setIfAbsentAll(['x:one:1', 'y:two:2', 'x:one:3'], 'v')).toEqual([null, null, null])
    const after = createStorage({ driver: fsDriver({ base }) })
    expect(await Promise.all(['x:one:1', 'y:two:2', 'x:one:3'].map((key) => after.getItem(key)))).toEqual(['v', 'v', 'v'])
    expect((await readdir(base, { recursive: true })).map(String).filter((file) => file.endsWith('.tmp'))).toEqual([])
  })

  it('reads the values of taken keys one at a time: 64 calls of 50 taken keys stay within the descriptor bound', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `held:k${i}`)
    await claimsOf(storage).setIfAbsentAll(keys, 'first')
    // readFile opens its own descriptors (the open() spy does not see them): count them in /proc.
    const descriptors = () => readdirSync('/proc/self/fd').length
    const baseline = descriptors()
    let peak = baseline
    let sampling = true
    const sample = () => {
      peak = Math.max(peak, descriptors())
      if (sampling) setImmediate(sample)
    }
    sample()
    const results = await Promise.all(Array.from({ length: 64 }, (_, i) => claimsOf(storage).setIfAbsentAll(keys, `late${i}`)))
    sampling = false
    expect(results.every((result) => result.every((value) => value === 'first'))).toBe(true)
    // Up to 64 operations, each with at most one descriptor (its temp file, or a value it reads).
    expect(peak - baseline).toBeLessThanOrEqual(64 + 8)
  })

  it('answers a retry of a whole batch with one read of the file behind its names', async () => {
    const fsp = await import('node:fs/promises')
    const keys = Array.from({ length: 50 }, (_, i) => `retry:k${i}`)
    await claimsOf(storage).setIfAbsentAll(keys, 'first')
    const reads = () => vi.mocked(fsp.readFile).mock.calls.length + vi.mocked(fsp.open).mock.calls.filter((call) => call[1] === 'r').length
    const before = reads()
    expect(await claimsOf(storage).setIfAbsentAll([...keys, 'retry:new'], 'second')).toEqual([...Array(50).fill('first'), null])
    // The 50 taken names are links to one file: read once, not 50 times (and the directory of the
    // one new name is flushed: a second open for reading).
    expect(reads() - before).toBeLessThanOrEqual(2)
  })

  it('removeExpired removes the expired keys below its base, reading each file behind them once', async () => {
    const fsp = await import('node:fs/promises')
    const old = Array.from({ length: 50 }, (_, i) => `d:old${i}`)
    await claimsOf(storage).setIfAbsentAll(old, 'old|1')
    await claimsOf(storage).setIfAbsentAll(['d:new1', 'd:new2'], 'new|2')
    await claimsOf(storage).setIfAbsent('d:alone', 'old|3')
    // One of the old batch's names taken over since: its own file, not expired.
    await storage.setItem('d:old7', 'new|4')
    // Outside the base: never looked at.
    await storage.setItem('other:k', 'old|5')
    // Stopped before it began: nothing goes.
    expect(await claimsOf(storage).removeExpired('d', () => true, AbortSignal.abort())).toBe(0)
    expect(await storage.getKeys('d')).toHaveLength(53)
    const reads = () => vi.mocked(fsp.readFile).mock.calls.length + vi.mocked(fsp.open).mock.calls.filter((call) => call[1] === 'r').length
    const before = reads()
    expect(await claimsOf(storage).removeExpired('d', (value) => value.startsWith('old'))).toBe(50)
    // Four files: the old batch's, the new batch's, the lone claim's, the taken-over name's (and
    // at most one directory flush, which opens the directory for reading).
    expect(reads() - before).toBeLessThanOrEqual(5)
    expect(sorted(await storage.getKeys('d'))).toEqual(['d:new1', 'd:new2', 'd:old7'])
    expect(await storage.getItem('d:old7')).toBe('new|4')
    expect(await storage.getItem('other:k')).toBe('old|5')
    expect(await claimsOf(storage).removeExpired('d', () => false)).toBe(0)
  })

  it('removeExpired keeps a name taken over just before it is removed', async () => {
    const fsp = await import('node:fs/promises')
    await claimsOf(storage).setIfAbsentAll(['d:a', 'd:b', 'd:c'], 'old|1')
    const open = vi.mocked(fsp.open)
    const actual = open.getMockImplementation()!
    // The moment removeExpired locks `d:b` to remove it, a take-over has just replaced it.
    open.mockImplementation(async (path, ...rest) => {
      if (/[\\/]\.b\.[0-9a-f]+\.lock\.tmp$/.test(String(path))) {
        open.mockImplementation(actual)
        expect(await claimsOf(storage).replaceAll(['d:b'], ['old|1'], 'new|2')).toEqual([true])
      }
      return actual(path, ...rest)
    })
    try {
      expect(await claimsOf(storage).removeExpired('d', (value) => value.startsWith('old'))).toBe(2)
    } finally {
      open.mockImplementation(actual)
    }
    expect(await storage.getKeys('d')).toEqual(['d:b'])
    expect(await storage.getItem('d:b')).toBe('new|2')
  })

  it('replaceAll sets only the keys that still hold the expected value, each under its lock', async () => {
    await claimsOf(storage).setIfAbsentAll(['r:a', 'r:b', 'r:c'], 'old|1')
    await storage.setItem('r:b', 'other|2')
    expect(await claimsOf(storage).replaceAll(['r:a', 'r:b', 'r:c', 'r:missing'], ['old|1', 'old|1', 'old|1', 'old|1'], 'new|3')).toEqual([true, false, true, false])
    expect(await storage.getItem('r:a')).toBe('new|3')
    expect(await storage.getItem('r:b')).toBe('other|2')
    expect(await storage.getItem('r:c')).toBe('new|3')
    expect(await storage.hasItem('r:missing')).toBe(false)
    // Replaced once: a second replace of the same old value finds it gone.
    expect(await claimsOf(storage).replaceAll(['r:a'], ['old|1'], 'late|4')).toEqual([false])
    // No lock is left behind, and none is a key.
    expect(readdirSync(join(base, 'r')).filter((name) => name.endsWith('.tmp'))).toEqual([])
    expect(sorted(await storage.getKeys('r'))).toEqual(['r:a', 'r:b', 'r:c'])
  })

  it('replaceAll waits out nobody: a fresh lock on the value makes it give up, one left by a dead process is broken once a minute old', async () => {
    await claimsOf(storage).setIfAbsent('l:a', 'old|1')
    const lock = join(base, 'l', `.a.${createHash('sha256').update('old|1').digest('hex').slice(0, 32)}.lock.tmp`)
    await writeFile(lock, 'held')
    expect(await claimsOf(storage).replaceAll(['l:a'], ['old|1'], 'new|2')).toEqual([false])
    expect(await storage.getItem('l:a')).toBe('old|1')
    const past = new Date(Date.now() - 61_000)
    await utimes(lock, past, past)
    expect(await claimsOf(storage).replaceAll(['l:a'], ['old|1'], 'new|2')).toEqual([true])
    expect(await storage.getItem('l:a')).toBe('new|2')
    expect(existsSync(lock)).toBe(false)
  })

  it('breaks at once a lock whose holder has ended (it names its process), and never one whose holder lives', async () => {
    await claimsOf(storage).setIfAbsent('l:a', 'old|1')
    const lock = join(base, 'l', `.a.${createHash('sha256').update('old|1').digest('hex').slice(0, 32)}.lock.tmp`)
    const self = processIdentity()!
    // A live holder (this very process): the fresh lock stands.
    await writeFile(lock, JSON.stringify(self))
    expect(await claimsOf(storage).replaceAll(['l:a'], ['old|1'], 'new|2')).toEqual([false])
    expect(await storage.getItem('l:a')).toBe('old|1')
    // A holder killed while holding it: a process that has exited, named by its pid.
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
    await new Promise((resolve) => child.on('exit', resolve))
    await writeFile(lock, JSON.stringify({ ...self, pid: child.pid!, start: '1' }))
    expect(await claimsOf(storage).replaceAll(['l:a'], ['old|1'], 'new|2')).toEqual([true])
    expect(await storage.getItem('l:a')).toBe('new|2')
    expect(existsSync(lock)).toBe(false)
  })

  it('a lock counts its age from when it was taken, not from the file it was made from: a long removeExpired keeps its locks', async () => {
    const fsp = await import('node:fs/promises')
    await claimsOf(storage).setIfAbsent('e:a', 'old|1')
    const other = createStorage({ driver: fsDriver({ base }) })
    const unlink = vi.mocked(fsp.unlink)
    const actual = unlink.getMockImplementation()!
    let taker: boolean[] | undefined
    // The moment removeExpired holds the lock of `e:a` and removes it, another process tries to take the claim over.
    unlink.mockImplementation(async (path) => {
      if (String(path) === join(base, 'e', 'a')) {
        unlink.mockImplementation(actual)
        taker = await claimsOf(other).replaceAll(['e:a'], ['old|1'], 'new|2')
      }
      return actual(path)
    })
    try {
      const removed = await claimsOf(storage).removeExpired('e', (value) => {
        // As if the run had been going for over a minute: every temp file made so far is that old.
        const past = new Date(Date.now() - 61_000)
        for (const name of readdirSync(join(base, 'e'))) if (name.endsWith('.tmp')) utimesSync(join(base, 'e', name), past, past)
        return value.startsWith('old')
      })
      expect(removed).toBe(1)
    } finally {
      unlink.mockImplementation(actual)
      await other.dispose()
    }
    // The lock was taken a moment ago: the taker finds it held and gives up.
    expect(taker).toEqual([false])
    expect(await storage.hasItem('e:a')).toBe(false)
    expect(readdirSync(join(base, 'e')).filter((name) => name.endsWith('.tmp'))).toEqual([])
  })

  it('a lock left by a dead process is broken once: whoever broke it holds it, and nobody breaks it again meanwhile', async () => {
    const fsp = await import('node:fs/promises')
    await claimsOf(storage).setIfAbsent('l:a', 'old|1')
    const lock = join(base, 'l', `.a.${createHash('sha256').update('old|1').digest('hex').slice(0, 32)}.lock.tmp`)
    await writeFile(lock, 'held')
    const past = new Date(Date.now() - 61_000)
    await utimes(lock, past, past)
    const [a, b, c] = [0, 1, 2].map(() => createStorage({ driver: fsDriver({ base }) }))
    const stat = vi.mocked(fsp.stat)
    const readFile = vi.mocked(fsp.readFile)
    const rename = vi.mocked(fsp.rename)
    const actual = { stat: stat.getMockImplementation()!, readFile: readFile.getMockImplementation()!, rename: rename.getMockImplementation()! }
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    let bHolds!: () => void
    const holding = new Promise<void>((resolve) => (bHolds = resolve))
    let cResult: Promise<boolean[]> | undefined
    const runC = () => (cResult ??= claimsOf(c!).replaceAll(['l:a'], ['old|1'], 'c|4'))
    let bResult: Promise<boolean[]> | undefined
    // A finds the dead lock; before it acts on what it found, B breaks it and holds it, having read `l:a`.
    stat.mockImplementation(async (path, ...rest) => {
      const found = await actual.stat(path, ...rest)
      if (String(path) === lock && !bResult) {
        readFile.mockImplementation(async (file, ...more) => {
          const text = await actual.readFile(file, ...more)
          if (String(file) === join(base, 'l', 'a')) {
            readFile.mockImplementation(actual.readFile)
            bHolds()
            await released
          }
          return text
        })
        bResult = claimsOf(b!).replaceAll(['l:a'], ['old|1'], 'b|3')
        await holding
        armed = true
      }
      return found
    })
    // C arrives at the worst moment: while A has B's lock out of the way, if it ever moves it.
    let armed = false
    rename.mockImplementation(async (from, to) => {
      await actual.rename(from, to)
      if (String(from) === lock && armed) {
        armed = false
        await runC()
      }
    })
    try {
      const aResult = await claimsOf(a!).replaceAll(['l:a'], ['old|1'], 'a|2')
      stat.mockImplementation(actual.stat)
      expect(aResult).toEqual([false])
      // B still holds the lock it broke: C, arriving now, gives up too.
      expect(await runC()).toEqual([false])
      release()
      expect(await bResult).toEqual([true])
    } finally {
      stat.mockImplementation(actual.stat)
      readFile.mockImplementation(actual.readFile)
      rename.mockImplementation(actual.rename)
      release()
      await Promise.all([a, b, c].map((each) => each!.dispose()))
    }
    expect(await storage.getItem('l:a')).toBe('b|3')
    expect(readdirSync(join(base, 'l')).filter((name) => name.endsWith('.tmp'))).toEqual([])
  })

  it('removeAllHolding removes only the keys that still hold the value', async () => {
    await claimsOf(storage).setIfAbsentAll(['h:a', 'h:b'], 'mine|1')
    await claimsOf(storage).replaceAll(['h:b'], ['mine|1'], 'theirs|2')
    expect(await claimsOf(storage).removeAllHolding(['h:a', 'h:b', 'h:gone'], 'mine|1')).toEqual([true, false, false])
    expect(sorted(await storage.getKeys('h'))).toEqual(['h:b'])
    expect(readdirSync(join(base, 'h')).filter((name) => name.endsWith('.tmp'))).toEqual([])
  })

  it('removeExpired starts nothing after a failure, and has ended when it rejects', async () => {
    const fsp = await import('node:fs/promises')
    const quick = createStorage({ driver: fsDriver({ base: join(base, 'quick'), fsync: false }) })
    const instance = claimsOf(quick)
    // 300 files, one per claim.
    for (let i = 0; i < 300; i++) await instance.setIfAbsent(`x:k${i}`, 'old|1')
    const unlink = vi.mocked(fsp.unlink)
    const actual = unlink.getMockImplementation()!
    const failing = join(base, 'quick', 'x', 'k5')
    unlink.mockImplementation(async (path) => {
      if (String(path) === failing) throw Object.assign(new Error('EPERM: operation not permitted'), { code: 'EPERM' })
      return actual(path)
    })
    try {
      const before = unlink.mock.calls.length
      await expect(instance.removeExpired('x', () => true)).rejects.toThrow(/EPERM/)
      const atRejection = unlink.mock.calls.length
      await sleep(100)
      expect(unlink.mock.calls.length).toBe(atRejection)
      // At most the 16 under way when it failed went on (each removal unlinks its name and its lock).
      expect(atRejection - before).toBeLessThan(2 * 300)
    } finally {
      unlink.mockImplementation(actual)
      await quick.dispose()
    }
  })

  it('refuses a key given twice', async () => {
    await expect(claimsOf(storage).setIfAbsentAll(['twice:a', 'twice:a'], 'v')).rejects.toThrow(/distinct keys/)
  })

  it('has exactly one winner per key across 4 processes claiming overlapping batches', async () => {
    await expectOneWinnerPerKey(200, (i) => ['all', String(i * 25)])
  })

  it('replaceAll has exactly one winner per key across 4 processes replacing one stale value at once', async () => {
    await claimsOf(storage).setIfAbsentAll(Array.from({ length: 200 }, (_, k) => `claim:${k}`), 'stale|1')
    await expectOneWinnerPerKey(200, (i) => ['replace', String(i * 25), 'stale|1'])
    // No lock is left behind.
    expect(readdirSync(join(base, 'claim')).filter((name) => name.endsWith('.lock.tmp'))).toEqual([])
  })
})

describe('fsDriver: crash durability', () => {
  it('never loses an acknowledged write nor serves a torn file across 25 SIGKILLs', { timeout: 60_000 }, async () => {
    const runs = 25
    const acked: string[] = []
    for (let run = 0; run < runs; run++) {
      const writer = startTs(helper('fs-crash-writer.ts'), [base, String(run)])
      // Count the delay from READY, not from spawn: loading TypeScript can take longer than 300 ms
      // on a slow machine, and a kill before the first write would test nothing.
      await writer.waitForLine((line) => line === 'READY')
      await sleep(randomInt(20, 301))
      writer.proc.kill('SIGKILL')
      await writer.closed
      for (const line of writer.lines) if (line.startsWith('ACK ')) acked.push(`r:${run}:${line.slice(4)}`)
    }
    expect(acked.length, 'the writers got writes done').toBeGreaterThan(runs)

    const after = createStorage({ driver: fsDriver({ base }) })
    for (const key of acked) expect(intact(await after.getItem(key)), `acked ${key}`).toBe(true)
    const keys = [...(await after.getKeys('r')), ...(await after.getKeys('hot'))]
    expect(keys.length).toBeGreaterThanOrEqual(acked.length)
    for (const key of keys) expect(intact(await after.getItem(key)), `listed ${key}`).toBe(true)

    // Kills land mid-write, so temp files are left; they stay hidden and the startup sweep removes them.
    const files = (await readdir(base, { recursive: true })).map(String)
    const leftovers = files.filter((file) => file.endsWith('.tmp'))
    expect(leftovers.length, 'some kills interrupted a write').toBeGreaterThan(0)
    expect(await removeStaleTempFiles(base, 0)).toBe(leftovers.length)
    expect(sorted([...(await after.getKeys('r')), ...(await after.getKeys('hot'))])).toEqual(sorted(keys))
  })
})

/** A crash-writer record is intact when its body hashes to the sha256 it carries. */
function intact(value: unknown): boolean {
  if (typeof value !== 'string') return false
  const match = /^sha256=([0-9a-f]{64})\n([\s\S]+)$/.exec(value)
  return !!match && createHash('sha256').update(match[2]!).digest('hex') === match[1]
}

