import { createHash, randomBytes } from 'node:crypto'
import type { Dirent } from 'node:fs'
import { link, mkdir, open, readdir, readFile, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { defineDriver, type Driver } from 'unstorage'
import { eachLimited } from '../base/each'
import { isGone, parseIdentity, processIdentity } from './process-identity'

const DRIVER_NAME = 'event-ingest-fs'

/** What `setIfAbsentAll` found of a key: its name taken, or to be claimed on its own by `setIfAbsent`. */
const TAKEN = Symbol('taken')
const ALONE = Symbol('alone')

/** File operations one driver instance runs at once; each holds at most one descriptor. */
const MAX_CONCURRENT_OPS = 64

/**
 * Files `removeExpired` works on at once: enough to keep libuv's 4 threads busy, few enough that
 * reads and writes of requests under way are not queued behind a whole directory's worth of work.
 */
const EXPIRY_CONCURRENCY = 16

/**
 * A replace lock older than this is taken to be left by a process that died holding it, and is
 * broken: a holder keeps one for a few file operations. The age {@link removeStaleTempFiles} is
 * meant to be run with.
 */
const LOCK_STALE_MS = 60_000
// What a replace lock holds: the identity of the process holding it, where it has one (Linux).
const lockOwner = (() => {
  const identity = processIdentity()
  return identity ? JSON.stringify(identity) : undefined
})()

/** Options of {@link fsDriver}. */
export interface FsDriverOptions {
  /** Directory holding the data; key `a:b:c` is the file `<base>/a/b/c`. Created on first write. */
  base: string
  /**
   * Flush every write (file, then its directory) to disk before it resolves. Turn off only for
   * data you can afford to lose on power loss; writes stay atomic either way.
   * @default true
   */
  fsync?: boolean
}

/** What `getInstance()` of {@link fsDriver} returns. */
export interface FsDriverInstance {
  /** The resolved, absolute base directory. */
  base: string
  /**
   * Atomically create `key` with `value` unless it exists, across processes on one local
   * filesystem. Resolves `null` when this call created it, else the existing value; rejects when
   * the existing file cannot be read. The file is complete and durable before it is visible.
   */
  setIfAbsent(key: string, value: string): Promise<string | null>
  /**
   * {@link FsDriverInstance.setIfAbsent} for several distinct keys with one value, for the price of
   * about one: the value is written and flushed to one file once, which then becomes each key by a
   * hard link. Resolves, per key, what `setIfAbsent` would.
   */
  setIfAbsentAll(keys: readonly string[], value: string): Promise<(string | null)[]>
  /**
   * Compare-and-set across processes on one local filesystem: sets each of several distinct keys
   * to `value` only where it still holds `expected[i]`; resolves, per key, whether it did. Of
   * several callers replacing one value at once, one wins (see {@link fsDriver} for how). The new
   * value is complete and durable before it is visible, and one file under every key set.
   */
  replaceAll(keys: readonly string[], expected: readonly string[], value: string): Promise<boolean[]>
  /**
   * Removes each key that still holds `value`, under the same lock as `replaceAll`, so a key a
   * replace has just set is never removed for the value it replaced. Resolves, per key, whether
   * it removed it.
   */
  removeAllHolding(keys: readonly string[], value: string): Promise<boolean[]>
  /**
   * Removes every key under `base` whose value `isExpired` says is over, reading each file once
   * however many keys name it (a batch's claims are one file under each id's name), and flushing
   * each directory once. Each name is removed under the lock of the value read (as
   * `removeAllHolding`), so a key replaced meanwhile (a claim taken over) stays. `signal` stops it
   * between two files. Resolves how many keys it removed.
   */
  removeExpired(base: string, isExpired: (value: string) => boolean, signal?: AbortSignal): Promise<number>
}

/**
 * An unstorage driver that keeps one file per key and never serves a torn file: every write goes
 * to a temp file in the same directory, is fsynced, then renamed over the key's file. `getKeys` and
 * `clear` touch only the directory of the base they are given.
 *
 * `setIfAbsent` links a complete temp file to the key's name: link(2) fails when the name exists,
 * so of several processes one creates it. `replaceAll` needs a compare-and-set, which no single
 * file operation gives (rename replaces whatever is there), so it builds one from O_EXCL: to
 * replace value V of key K, a process first creates a lock file named after K and V
 * (`.<K>.<hash of V>.lock.tmp`); only one process at a time holds it. Holding it, it reads K, and
 * only if K still holds V renames the new file over K, then removes the lock. Every value is
 * replaced under the lock of that value, and a value, once replaced, never comes back (claim
 * values name their batch and time), so a second process that gets the lock afterwards reads
 * something else in K and gives up: V is replaced once. Removing K for holding V (a release, an
 * expiry) takes the same lock, so it cannot remove what a replace of V has just put there.
 * Creating K needs K absent, so it cannot meet a replace. A lock outlives its holder only when the holder dies between two file
 * operations; it is broken, by one process, once LOCK_STALE_MS old, counted from when it was taken
 * (see `takeLock`; and swept by {@link removeStaleTempFiles}).
 * The one way two processes could then both replace V is a holder stalled longer than that between
 * its read and its rename.
 *
 * @example
 * const storage = createStorage({ driver: fsDriver({ base: './data' }) })
 * await storage.setItem('events:2024:evt_1', '{"id":"evt_1"}')
 * const claim = storage.getMount('').driver.getInstance?.() as FsDriverInstance
 * await claim.setIfAbsent('locks:job', 'worker-1') // null: we hold it
 */
export const fsDriver: (opts: FsDriverOptions) => Driver<FsDriverOptions, FsDriverInstance> = defineDriver<
  FsDriverOptions,
  FsDriverInstance
>((opts) => {
  if (!opts || typeof opts.base !== 'string' || opts.base === '') throw driverError('Missing required option `base`')
  if (opts.fsync !== undefined && typeof opts.fsync !== 'boolean') throw driverError('Option `fsync` must be a boolean')
  const root = resolve(opts.base)
  const fsync = opts.fsync ?? true
  const slots = new Semaphore(MAX_CONCURRENT_OPS)
  const inFlight = new Set<Promise<unknown>>()

  /** Keeps `promise` in the work `dispose()` waits for until it settles. */
  const tracked = <T>(promise: Promise<T>): Promise<T> => {
    inFlight.add(promise)
    const forget = () => inFlight.delete(promise)
    promise.then(forget, forget)
    return promise
  }

  const limit = <T>(fn: () => Promise<T>): Promise<T> => tracked(slots.run(fn))

  const pathOf = (key: string) => join(root, ...keySegments(key))

  const fsyncDir = async (dir: string) => {
    const handle = await open(dir, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  }

  // Group commit: a directory fsync covers every entry made before it started, so callers that
  // arrive while one runs share the single next one instead of each paying for their own (a batch
  // of 50 events makes 50 claim files in one directory).
  const dirSyncs = new Map<string, { current?: Promise<void>; next?: Promise<void> }>()
  const syncDir = (dir: string): Promise<void> => {
    // Windows cannot open a directory with fs.open, so there is no directory to fsync there.
    if (!fsync || process.platform === 'win32') return Promise.resolve()
    let state = dirSyncs.get(dir)
    if (!state) dirSyncs.set(dir, (state = {}))
    const entry = state
    if (!entry.current) {
      const run = fsyncDir(dir)
      entry.current = run
      const done = () => {
        entry.current = undefined
        if (!entry.next) dirSyncs.delete(dir)
      }
      run.then(done, done)
      return run
    }
    if (!entry.next) {
      const after = () => {
        entry.next = undefined
        return syncDir(dir)
      }
      entry.next = entry.current.then(after, after)
    }
    return entry.next
  }

  const makeDirs = async (dir: string) => {
    const first = await mkdir(dir, { recursive: true })
    // Another writer may have created part of the chain without having synced it yet, so sync
    // every ancestor up to the root ourselves, and above the root as far as mkdir created.
    const top = first !== undefined && !isInside(first, root) ? dirname(first) : root
    for (let current = dir; current !== top && current !== dirname(current); ) {
      current = dirname(current)
      await syncDir(current)
    }
  }

  /** Writes `data` to a fresh temp file beside `path`, fsynced and closed; returns its path. */
  const writeTemp = async (path: string, data: string | Uint8Array): Promise<string> => {
    const temp = join(dirname(path), tempName(basename(path)))
    let handle: FileHandle
    try {
      handle = await open(temp, 'wx')
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error
      await makeDirs(dirname(path))
      handle = await open(temp, 'wx')
    }
    try {
      try {
        await handle.writeFile(data)
        if (fsync) await handle.sync()
      } finally {
        await handle.close()
      }
    } catch (error) {
      await unlink(temp).catch(() => {})
      throw error
    }
    return temp
  }

  const write = (key: string, data: string | Uint8Array) => {
    const path = pathOf(key)
    return limit(async () => {
      const temp = await writeTemp(path, data)
      try {
        await rename(temp, path)
      } catch (error) {
        await unlink(temp).catch(() => {})
        throw error
      }
      await syncDir(dirname(path))
    })
  }

  const read = async (key: string, encoding?: 'utf8') => {
    const path = pathOf(key)
    try {
      return await limit(() => readFile(path, encoding === undefined ? undefined : { encoding }))
    } catch (error) {
      if (isMissing(error)) return null
      throw error
    }
  }

  /** A directory's entries; none when it does not exist (or is not a directory). */
  const list = async (dir: string): Promise<Dirent[]> => {
    try {
      return await limit(() => readdir(dir, { withFileTypes: true }))
    } catch (error) {
      if (isMissing(error)) return []
      throw error
    }
  }

  const walk = async (dir: string, prefix: string[], keys: string[], maxDepth: number | undefined) => {
    // A key's depth is its number of ':' from the driver root, as unstorage's filterKeyByDepth counts.
    if (maxDepth !== undefined && prefix.length > maxDepth) return
    const entries = await list(dir)
    await Promise.all(
      entries.map(async (entry) => {
        if (entry.isDirectory()) await walk(join(dir, entry.name), [...prefix, entry.name], keys, maxDepth)
        else if (!isTempName(entry.name)) keys.push([...prefix, entry.name].join(':'))
      }),
    )
  }

  const removeTree = async (dir: string, keepDir: boolean) => {
    const entries = await list(dir)
    await Promise.all(
      entries.map(async (entry) => {
        const path = join(dir, entry.name)
        if (entry.isDirectory()) return removeTree(path, false)
        await unlink(path).catch(ignoreCodes('ENOENT'))
      }),
    )
    // ENOTEMPTY: a write landed after we listed the directory; it is newer than the clear, keep it.
    if (!keepDir) await rmdir(dir).catch(ignoreCodes('ENOENT', 'ENOTDIR', 'ENOTEMPTY'))
  }

  /**
   * Positions of `paths` grouped by the file behind each, as `stat` finds it (no descriptor held);
   * names that are gone, or not files, are left out.
   */
  const groupByFile = async (paths: readonly string[], concurrency: number, signal?: AbortSignal): Promise<Map<string, number[]>> => {
    const files = new Map<string, number[]>()
    await eachLimited(paths.map((_, i) => i), concurrency, async (i) => {
      if (signal?.aborted) return
      const info = await stat(paths[i]!).catch(() => undefined)
      if (!info?.isFile()) return
      const id = fileId(info)
      const names = files.get(id)
      if (names) names.push(i)
      else files.set(id, [i])
    })
    return files
  }

  /** The text of file `id` read through `path`; undefined when the name is gone or names another file now. */
  const readIfSame = async (path: string, id: string): Promise<string | undefined> => {
    const handle = await open(path, 'r').catch(() => undefined)
    if (!handle) return undefined
    try {
      return fileId(await handle.stat()) === id ? await handle.readFile('utf8') : undefined
    } finally {
      await handle.close()
    }
  }

  /**
   * Fills in the values of taken names with one read per file behind them: the names of one
   * earlier batch's claims are links to one file (a retry of a batch finds 50 names and reads
   * once). The file read is checked to be the one the names were grouped by. What this cannot
   * settle stays TAKEN, for a read of its own.
   */
  const readTakenByFile = async (paths: readonly string[], linked: (string | null | typeof TAKEN | typeof ALONE)[]) => {
    const taken = paths.flatMap((_, i) => (linked[i] === TAKEN ? [i] : []))
    if (taken.length < 2) return
    for (const [id, names] of await groupByFile(taken.map((i) => paths[i]!), MAX_CONCURRENT_OPS)) {
      if (names.length < 2) continue
      // Gone or unreadable now: each name is read on its own.
      const value = await readIfSame(paths[taken[names[0]!]!]!, id).catch(() => undefined)
      if (value !== undefined) for (const n of names) linked[taken[n]!] = value
    }
  }

  const instance: FsDriverInstance = {
    base: root,
    async setIfAbsent(key, value) {
      const path = pathOf(key)
      return limit(async () => {
        const temp = await writeTemp(path, value)
        try {
          // link() creates the name only if it is free, atomically, and the content behind it is
          // already complete: rename() would replace, open(O_EXCL) would expose a partial file.
          for (let attempt = 0; attempt < 5; attempt++) {
            try {
              await link(temp, path)
              await syncDir(dirname(path))
              return null
            } catch (error) {
              if (errorCode(error) !== 'EEXIST') throw error
            }
            try {
              return await readFile(path, 'utf8')
            } catch (error) {
              // Unreadable is not free: the caller must not take the name over (it answers 503).
              if (errorCode(error) !== 'ENOENT') throw error
              // Removed between our link() and read: the name is free again, claim it.
            }
          }
          throw driverError(`could not claim ${JSON.stringify(key)}: it kept changing`)
        } finally {
          await unlink(temp).catch(() => {})
        }
      })
    },
    setIfAbsentAll(keys, value) {
      // Tracked as a whole: its fallbacks start after its own operation has ended.
      return tracked(claimAll(keys, value))
    },
    replaceAll(keys, expected, value) {
      return tracked(replaceAll(keys, expected, value))
    },
    removeAllHolding(keys, value) {
      return tracked(removeAllHolding(keys, value))
    },
    removeExpired(base, isExpired, signal) {
      return tracked(removeExpired(base, isExpired, signal))
    },
  }

  async function removeExpired(base: string, isExpired: (value: string) => boolean, signal?: AbortSignal): Promise<number> {
    const prefix = baseSegments(base)
    const keys: string[] = []
    await walk(join(root, ...prefix), prefix, keys, undefined)
    const paths = keys.map(pathOf)
    const files = await groupByFile(paths, EXPIRY_CONCURRENCY, signal)
    if (files.size === 0) return 0
    let removed = 0
    const dirs = new Set<string>()
    try {
      await eachLimited([...files], EXPIRY_CONCURRENCY, async ([id, names]) => {
        if (signal?.aborted) return
        // Read through the first name still behind that file.
        let value: string | undefined
        for (let i = 0; value === undefined && i < names.length; i++) value = await limit(() => readIfSame(paths[names[i]!]!, id))
        if (value === undefined || !isExpired(value)) return
        for (const path of names.map((n) => paths[n]!)) {
          // Under the lock of the value: a claim taken over meanwhile is another file, and stays.
          if (await limit(() => removeHolding(path, value, id))) {
            removed++
            dirs.add(dirname(path))
          }
        }
      })
    } finally {
      for (const dir of dirs) await limit(() => syncDir(dir))
    }
    return removed
  }

  /**
   * Removes `path` if it holds `value`, under the lock of that value (see {@link fsDriver}). With
   * `id`, the file known to hold `value`, a `stat` tells whether the name still is that file (a
   * replace makes a new one) without reading it again.
   */
  async function removeHolding(path: string, value: string, id?: string): Promise<boolean> {
    const lock = join(dirname(path), lockName(basename(path), value))
    // Held: a replace of this value is under way, after which the key no longer holds it.
    const mine = await takeLock(lock)
    if (mine === undefined) return false
    try {
      let holds = false
      try {
        holds = id !== undefined ? fileId(await stat(path)) === id : (await readFile(path, 'utf8')) === value
      } catch (error) {
        if (!isMissing(error)) throw error
      }
      if (!holds) return false
      await unlink(path).catch(ignoreCodes('ENOENT'))
      return true
    } finally {
      await dropLock(lock, mine)
    }
  }

  async function removeAllHolding(keys: readonly string[], value: string): Promise<boolean[]> {
    if (keys.length === 0) return []
    const paths = keys.map(pathOf)
    // One key after another: each read holds a descriptor.
    const removed: boolean[] = []
    for (const path of paths) removed.push(await limit(() => removeHolding(path, value)))
    for (const dir of new Set(paths.filter((_, i) => removed[i]).map((path) => dirname(path)))) await limit(() => syncDir(dir))
    return removed
  }

  /**
   * Creates `lock` unless another holds it; resolves the lock as taken (see {@link fileId}), or
   * undefined when another holds it or its directory is gone (then there is no key to lock).
   *
   * The lock is a new empty file made by this very call (O_EXCL: the name is taken only if it is
   * free), so its mtime is the moment it was taken. (A lock linked to a file made earlier, the new
   * value's file or one file for a whole `removeExpired` run, would show that file's age: a live
   * lock could look stale at once.) The age compares that mtime, set by the kernel from the wall
   * clock, with `Date.now()`, the same clock of the same machine (the directory is local). A
   * coarse timestamp (1 s on some file systems, 2 s on FAT) makes a lock look older by at most
   * that, far below LOCK_STALE_MS; a wall clock stepped forward by more than LOCK_STALE_MS makes
   * every lock look stale, as any measure by that clock would, and one stepped back delays the
   * breaking of dead locks.
   *
   * A stale lock is broken by one process only: the breaker first creates, with O_EXCL, a marker
   * named after that lock file's identity (device, inode, mtime); whoever fails to create it leaves
   * the lock alone and gives up. The marker's creator checks that the lock is still the file it
   * judged, unlinks it, drops the marker, then competes for the free name like anyone (O_EXCL
   * again: one winner). Only the dead holder or the marker's creator removes the stale file, so
   * that unlink removes it and never a fresh lock taken meanwhile; a marker created after the
   * break finds another file (or none) under the name and leaves it. (Moving the lock aside and
   * putting back what turned out fresh would leave the name free meanwhile: a third process could
   * take it while the moved lock's owner still believes it holds it.) A breaker that dies holding
   * its marker leaves that lock unbroken until both are swept by {@link removeStaleTempFiles}.
   */
  async function takeLock(lock: string): Promise<string | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const taken = await createEmpty(lock, lockOwner)
      if (taken !== 'exists') return taken
      const held = await stat(lock).catch(() => undefined)
      // Let go of meanwhile: try again.
      if (!held) continue
      if (Date.now() - held.mtimeMs < LOCK_STALE_MS && !(await holderGone(lock))) return undefined
      const judged = fileId(held)
      const marker = join(dirname(lock), `.${createHash('sha256').update(`${basename(lock)}\0${judged}`).digest('hex').slice(0, 32)}.break.tmp`)
      const breaking = await createEmpty(marker, lockOwner)
      // Another process is breaking it: the name is theirs to free; a breaker that ended while
      // breaking it frees nothing, so its marker goes (the next attempt breaks the lock).
      if (breaking === 'exists' && (await holderGone(marker))) await unlink(marker).catch(ignoreCodes('ENOENT'))
      if (breaking === 'exists' || breaking === undefined) return undefined
      try {
        const still = await stat(lock).catch(() => undefined)
        if (still && fileId(still) !== judged) return undefined
        if (still) await unlink(lock).catch(ignoreCodes('ENOENT'))
      } finally {
        await unlink(marker).catch(ignoreCodes('ENOENT'))
      }
    }
    return undefined
  }

  /**
   * Whether the process that took `lock` has certainly ended (see ProcessIdentity): a lock names
   * its holder, so one left by a process killed while holding it is broken at once, not once it
   * is LOCK_STALE_MS old. A lock with no readable holder (taken by an older version, or read while
   * its holder writes it) is judged by its age.
   */
  async function holderGone(lock: string): Promise<boolean> {
    if (!lockOwner) return false
    const identity = parseIdentity(await readFile(lock, 'utf8').catch(() => ''))
    return identity !== undefined && isGone(identity)
  }

  /** Removes `lock` if it is still the one this process took. */
  async function dropLock(lock: string, mine: string): Promise<void> {
    const held = await stat(lock).catch(() => undefined)
    if (held && fileId(held) === mine) await unlink(lock).catch(ignoreCodes('ENOENT'))
  }

  /** Sets `path` to the content of `file` if it holds `expected`, under the lock of that value (see {@link fsDriver}). */
  async function replaceOne(path: string, expected: string, file: string): Promise<boolean> {
    const lock = join(dirname(path), lockName(basename(path), expected))
    const mine = await takeLock(lock)
    if (mine === undefined) return false
    try {
      let current: string | undefined
      try {
        current = await readFile(path, 'utf8')
      } catch (error) {
        if (!isMissing(error)) throw error
      }
      if (current !== expected) return false
      // A name of its own for the rename, so `file` stays for the other keys.
      const staged = join(dirname(path), tempName(basename(path)))
      await link(file, staged)
      try {
        await rename(staged, path)
      } catch (error) {
        await unlink(staged).catch(() => {})
        throw error
      }
      return true
    } finally {
      await dropLock(lock, mine)
    }
  }

  async function replaceAll(keys: readonly string[], expected: readonly string[], value: string): Promise<boolean[]> {
    if (keys.length === 0) return []
    if (new Set(keys).size !== keys.length) throw driverError('replaceAll takes distinct keys')
    const paths = keys.map(pathOf)
    return limit(async () => {
      // One file with the value, complete and flushed before any key names it.
      const temp = await writeTemp(paths[0]!, value)
      try {
        // One key after another: each read holds a descriptor, and a call holds at most one.
        const won: boolean[] = []
        for (let i = 0; i < paths.length; i++) won.push(await replaceOne(paths[i]!, expected[i]!, temp))
        // The new names are durable before the keys are reported set.
        for (const dir of new Set(paths.filter((_, i) => won[i]).map((path) => dirname(path)))) await syncDir(dir)
        return won
      } finally {
        await unlink(temp).catch(() => {})
      }
    })
  }

  async function claimAll(keys: readonly string[], value: string): Promise<(string | null)[]> {
    if (keys.length === 0) return []
    if (new Set(keys).size !== keys.length) throw driverError('setIfAbsentAll takes distinct keys')
    const paths = keys.map(pathOf)
    // Links a free name to the value's file: null when linked, TAKEN when the name exists, ALONE
    // when the key must be claimed on its own (its directory not made yet, too many links to one
    // file, or another file system under the base).
    const linkTo = (temp: string, path: string): Promise<null | typeof TAKEN | typeof ALONE> =>
      link(temp, path).then(() => null, (error: unknown) => {
        const code = errorCode(error)
        if (code === 'EEXIST') return TAKEN
        if (code === 'ENOENT' || code === 'EMLINK' || code === 'EXDEV') return ALONE
        throw error
      })
    const results = await limit(async () => {
      // One file with the value, complete and flushed before any key names it.
      const temp = await writeTemp(paths[0]!, value)
      try {
        // Links hold no descriptor: all at once. The values of names already taken are read one
        // at a time (a file each), so one call never holds more than one descriptor.
        const linked: (string | null | typeof TAKEN | typeof ALONE)[] = await Promise.all(paths.map((path) => linkTo(temp, path)))
        await readTakenByFile(paths, linked)
        for (let i = 0; i < paths.length; i++) {
          for (let attempt = 0; linked[i] === TAKEN; attempt++) {
            if (attempt === 5) throw driverError(`could not claim ${JSON.stringify(keys[i])}: it kept changing`)
            try {
              linked[i] = await readFile(paths[i]!, 'utf8')
            } catch (error) {
              // Unreadable is not free (the caller answers 503); removed since the link, it is.
              if (errorCode(error) !== 'ENOENT') throw error
              linked[i] = await linkTo(temp, paths[i]!)
            }
          }
        }
        // The new names are durable before the claims are reported held (one directory after
        // another: each flush holds a descriptor).
        for (const dir of new Set(paths.filter((_, i) => linked[i] === null).map((path) => dirname(path)))) await syncDir(dir)
        return linked
      } finally {
        await unlink(temp).catch(() => {})
      }
    })
    return Promise.all(results.map((result, i) => (result === ALONE ? instance.setIfAbsent(keys[i]!, value) : result as string | null)))
  }

  return {
    name: DRIVER_NAME,
    options: opts,
    flags: { maxDepth: true },
    getInstance: () => instance,
    async hasItem(key) {
      const path = pathOf(key)
      try {
        return (await stat(path)).isFile()
      } catch (error) {
        if (isMissing(error)) return false
        throw error
      }
    },
    getItem: (key) => read(key, 'utf8'),
    getItemRaw: (key) => read(key),
    async setItem(key, value) {
      if (typeof value !== 'string') throw driverError(`setItem expects a string, got ${typeof value}`)
      await write(key, value)
    },
    async setItemRaw(key, value) {
      await write(key, toBytes(value))
    },
    async removeItem(key) {
      const path = pathOf(key)
      await limit(async () => {
        try {
          await unlink(path)
        } catch (error) {
          if (isMissing(error)) return
          throw error
        }
        await syncDir(dirname(path))
      })
    },
    async getKeys(base, keyOpts) {
      const prefix = baseSegments(base)
      const keys: string[] = []
      await walk(join(root, ...prefix), prefix, keys, keyOpts?.maxDepth)
      return keys
    },
    async clear(base) {
      const prefix = baseSegments(base)
      const dir = join(root, ...prefix)
      await removeTree(dir, prefix.length === 0)
      await limit(() => syncDir(prefix.length === 0 ? root : dirname(dir))).catch(ignoreCodes('ENOENT'))
    },
    async dispose() {
      await Promise.allSettled(inFlight)
    },
  }
})

/**
 * Deletes temp files left by writes that never finished (a crash, a kill) below `base`, if they
 * were last modified more than `olderThanMs` ago. Run it at startup; keep `olderThanMs` well above
 * the longest write (a minute is plenty) so that temp files of live writers in other processes
 * survive. Resolves the number of files removed.
 *
 * @example
 * await removeStaleTempFiles('./data', 60_000)
 */
export async function removeStaleTempFiles(base: string, olderThanMs: number): Promise<number> {
  const cutoff = Date.now() - olderThanMs
  let removed = 0
  // Sequential on purpose: one descriptor at a time, and startup is not latency-critical.
  const visit = async (dir: string): Promise<void> => {
    let entries: Dirent[]
    try {
      entries = await readdir(dir, { withFileTypes: true })
    } catch (error) {
      if (isMissing(error)) return
      throw error
    }
    for (const entry of entries) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) {
        await visit(path)
      } else if (entry.isFile() && isTempName(entry.name)) {
        const info = await stat(path).catch(ignoreCodes('ENOENT'))
        if (!info || info.mtimeMs > cutoff) continue
        try {
          await unlink(path)
          removed++
        } catch (error) {
          if (errorCode(error) !== 'ENOENT') throw error
        }
      }
    }
  }
  await visit(resolve(base))
  return removed
}

/**
 * A file as `stat` finds it: device, inode and modification time (an inode number freed meanwhile
 * can come back for a new file).
 */
function fileId(info: { dev: number; ino: number; mtimeMs: number }): string {
  return `${info.dev}:${info.ino}:${info.mtimeMs}`
}

/** Caps how many operations run at once; the rest wait in arrival order. */
class Semaphore {
  #free: number
  #queue: ((() => void) | undefined)[] = []
  #head = 0

  constructor(size: number) {
    this.#free = size
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--
    else await new Promise<void>((wake) => this.#queue.push(wake))
    try {
      return await fn()
    } finally {
      this.#release()
    }
  }

  #release() {
    const next = this.#queue[this.#head]
    if (!next) {
      this.#free++
      this.#queue = []
      this.#head = 0
      return
    }
    this.#queue[this.#head++] = undefined
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#head = 0
    }
    next()
  }
}

/**
 * Creates an empty file at `path` if the name is free (O_EXCL); resolves its identity, 'exists'
 * when the name is taken, or undefined when its directory is gone.
 */
async function createEmpty(path: string, content?: string): Promise<string | 'exists' | undefined> {
  let handle: FileHandle
  try {
    handle = await open(path, 'wx')
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return 'exists'
    if (isMissing(error)) return undefined
    throw error
  }
  try {
    if (content) await handle.writeFile(content)
    return fileId(await handle.stat())
  } catch (error) {
    await unlink(path).catch(() => {})
    throw error
  } finally {
    await handle.close()
  }
}

function driverError(message: string): Error {
  return new Error(`[${DRIVER_NAME}] ${message}`)
}

function isTempName(name: string): boolean {
  return name.startsWith('.') && name.endsWith('.tmp')
}

/** The replace lock of `value` in key file `name` (a temp name: hidden from getKeys, swept when stale). */
function lockName(name: string, value: string): string {
  const stem = Buffer.byteLength(name) > 200 ? createHash('sha256').update(name).digest('hex').slice(0, 32) : name
  return `.${stem}.${createHash('sha256').update(value).digest('hex').slice(0, 32)}.lock.tmp`
}

function tempName(name: string): string {
  // File names are capped at 255 bytes; a long key's own name plus the suffix could overflow.
  const stem = Buffer.byteLength(name) > 200 ? createHash('sha256').update(name).digest('hex').slice(0, 32) : name
  return `.${stem}.${process.pid}.${tempRun}${(tempCount++).toString(36)}.tmp`
}

// Temp names: this process's id, a random part drawn once per process (pids are reused), a count.
const tempRun = randomBytes(6).toString('hex')
let tempCount = 0

function keySegments(key: string): string[] {
  if (typeof key !== 'string') throw driverError(`Invalid key: ${String(key)}. Keys are strings`)
  const segments = key.split(/[:/\\]/)
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw driverError(`Invalid key: ${JSON.stringify(key)}. Empty, "." and ".." segments are not allowed`)
    }
    if (segment.includes('\0')) throw driverError(`Invalid key: ${JSON.stringify(key)}. NUL is not allowed`)
  }
  // The temp-file pattern is reserved: such files are hidden from getKeys and removed as stale.
  if (isTempName(segments[segments.length - 1]!)) {
    throw driverError(`Invalid key: ${JSON.stringify(key)}. Names starting with "." and ending ".tmp" are reserved`)
  }
  return segments
}

/** unstorage passes the base with a trailing ':' (`'a:b:'`), or undefined for the root. */
function baseSegments(base: string | undefined): string[] {
  const trimmed = (base ?? '').replace(/[:/\\]+$/, '')
  if (trimmed === '') return []
  const segments = trimmed.split(/[:/\\]/)
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..' || segment.includes('\0'))) {
    throw driverError(`Invalid base: ${JSON.stringify(base)}. Empty, "." and ".." segments are not allowed`)
  }
  return segments
}

function toBytes(value: unknown): string | Uint8Array {
  if (typeof value === 'string' || value instanceof Uint8Array) return value
  if (value instanceof ArrayBuffer) return new Uint8Array(value)
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
  throw driverError(`setItemRaw expects a Buffer, Uint8Array, ArrayBuffer or string, got ${typeof value}`)
}

/** Whether `path` lies strictly below `dir`. */
function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path)
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel)
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code
}

/** A missing file, a file where a directory was expected, or a directory where a file was. */
function isMissing(error: unknown): boolean {
  const code = errorCode(error)
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR'
}

function ignoreCodes(...codes: string[]) {
  return (error: unknown): undefined => {
    if (codes.includes(errorCode(error) ?? '')) return undefined
    throw error
  }
}
