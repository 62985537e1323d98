/**
 * One bench server process: starts a target on loopback and answers the runner's IPC commands
 * (CPU and memory samples, counters, in-process loading, close). Run by `bench/run.ts`, never by hand.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { findSourceMap } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { EventIngest, StorageOption } from '../src/index'
import { createEventRing, importBuilt, startApp } from './apps'
import { makeEventBatch } from './events'
import { memoryHandStore, redisHandStore, type HandStore } from './hand'
import type { Counters, CpuSample, MemorySample, ServerCommand, ServerConfig, ServerMessage } from './protocol'
import { targets } from './targets'

const root = fileURLToPath(new URL('..', import.meta.url))
const config = JSON.parse(process.argv[2] ?? '{}') as ServerConfig
const target = targets.find((t) => t.id === config.target)
if (!target) throw new Error(`unknown bench target ${JSON.stringify(config.target)}`)
if (!process.send) throw new Error('bench/server.ts runs as a child of bench/run.ts (it needs an IPC channel)')

const send = (message: ServerMessage, then?: () => void) => process.send!(message, undefined, {}, then)
const ring = createEventRing()
let ingest: EventIngest<any> | undefined
let loaded = 0
let loadSerial = 0

function storageOption(): StorageOption {
  switch (target!.storage) {
    case 'fs':
      if (!config.fsDir) throw new Error('fs target without fsDir')
      return { driver: 'fs', base: config.fsDir }
    case 'redis':
      if (!config.redisUrl || !config.redisBase) throw new Error('redis target without redisUrl/redisBase')
      return { driver: 'redis', url: config.redisUrl, base: config.redisBase }
    case 'postgres':
      if (!config.postgresUrl || !config.postgresSchema) throw new Error('postgres target without postgresUrl/postgresSchema')
      return { driver: 'postgres', url: config.postgresUrl, schema: config.postgresSchema }
    default:
      return { driver: 'memory' }
  }
}

if (target.kind === 'ours') {
  // Imported only here, so the bare baselines neither load nor start anything of ours.
  const { createEventIngest } = await importBuilt<typeof import('../src/index')>(config.buildDir, 'index.mjs')
  ingest = createEventIngest({ env: {}, storage: storageOption(), adminToken: config.adminToken })
  await ingest.ready()
}
let hand: HandStore | undefined
if (target.kind === 'hand') {
  if (target.storage === 'redis') {
    if (!config.redisUrl || !config.redisBase) throw new Error('redis target without redisUrl/redisBase')
    hand = redisHandStore(config.redisUrl, config.redisBase)
  } else {
    hand = memoryHandStore()
  }
}
const app = await startApp(target, ring, ingest, config.buildDir, hand)

async function counters(): Promise<Counters> {
  if (hand) return { ...hand.counts, rejected: 0 }
  if (!ingest) return { accepted: ring.received, duplicates: 0, rejected: 0 }
  const { totals } = await ingest.stats()
  return { accepted: totals.accepted, duplicates: totals.duplicates, rejected: totals.rejected }
}

/** Stored bytes of the memory driver (string lengths of keys and values): the data, as opposed to what holds it. */
function memoryDataBytes(): number | undefined {
  if (target!.storage !== 'memory' || !ingest?.storage) return undefined
  const mount = ingest.storage.getMount('') as { driver: { getInstance?: () => unknown } }
  const map = mount.driver.getInstance?.()
  if (!(map instanceof Map)) return undefined
  let bytes = 0
  for (const [key, value] of map) {
    bytes += String(key).length + (typeof value === 'string' ? value.length : value instanceof Uint8Array ? value.byteLength : JSON.stringify(value)?.length ?? 0)
  }
  return bytes
}

/** Loads events through `ingest.ingest()` (no HTTP) until `total` are stored. */
async function load(total: number, batchSize: number): Promise<{ stored: number; ms: number }> {
  if (!ingest) throw new Error('load needs an event-ingest target')
  const started = performance.now()
  const occurredAt = new Date().toISOString()
  const inFlight = new Set<Promise<void>>()
  while (loaded < total || inFlight.size > 0) {
    while (loaded + inFlight.size * batchSize < total && inFlight.size < 4) {
      const size = Math.min(batchSize, total - loaded - inFlight.size * batchSize)
      const batch = makeEventBatch(size, `${config.tag}L`, loadSerial++, occurredAt)
      const done: Promise<void> = ingest.ingest(batch).then((result) => {
        if (result.accepted !== size) throw new Error(`load: ${size - result.accepted} of ${size} events not accepted (${result.duplicates} duplicates, ${result.rejected.length} rejected)`)
        loaded += result.accepted
        inFlight.delete(done)
      })
      inFlight.add(done)
    }
    await Promise.race(inFlight)
  }
  return { stored: loaded, ms: performance.now() - started }
}

/**
 * Source maps of the code this server ran, so profile positions map back to .ts lines: the
 * loader's (tsx compiles the bench's TypeScript, and may pass over built files too) by file URL,
 * and the build's own maps, with their sources made absolute, as `<file URL>.map`.
 */
function dumpSourceMaps(out: string): void {
  const maps: Record<string, unknown> = {}
  const built = readdirSync(config.buildDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.mjs')).map((f) => join(config.buildDir, f))
  for (const file of [...built, ...readdirSync(join(root, 'bench')).filter((f) => f.endsWith('.ts')).map((f) => join(root, 'bench', f))]) {
    const url = pathToFileURL(file).href
    const map = findSourceMap(url)
    if (map) maps[url] = map.payload
  }
  for (const file of built) {
    try {
      const map = JSON.parse(readFileSync(`${file}.map`, 'utf8')) as { sources: string[] }
      const url = pathToFileURL(file).href
      map.sources = map.sources.map((source) => new URL(source, url).href)
      maps[`${url}.map`] = map
    } catch {
      // No map beside it: positions stay those of the built file.
    }
  }
  writeFileSync(out, JSON.stringify(maps))
}

async function run(command: ServerCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'cpu': {
      const { user, system } = process.cpuUsage()
      return { user, system, at: performance.timeOrigin + performance.now(), monoUs: Number(process.hrtime.bigint() / 1000n), minorFaults: process.resourceUsage().minorPageFault } satisfies CpuSample
    }
    case 'mem': {
      if (command.gc) {
        if (typeof globalThis.gc !== 'function') throw new Error('mem with gc needs node --expose-gc')
        globalThis.gc()
      }
      const usage = process.memoryUsage()
      const events = (await counters()).accepted
      return {
        at: performance.timeOrigin + performance.now(),
        heapUsed: usage.heapUsed,
        heapTotal: usage.heapTotal,
        rss: usage.rss,
        external: usage.external,
        dataBytes: command.dataBytes ? memoryDataBytes() : undefined,
        events,
      } satisfies MemorySample
    }
    case 'counters':
      return counters()
    case 'load':
      return load(command.total, command.batchSize)
    case 'close': {
      await app.close()
      await ingest?.close()
      if (config.sourceMapsOut) dumpSourceMaps(config.sourceMapsOut)
      return null
    }
  }
}

process.on('message', (command: ServerCommand) => {
  run(command).then(
    (value) => {
      // After close, exit once the reply is out: a normal exit, so --cpu-prof writes its profile.
      send({ type: 'reply', id: command.id, ok: true, value }, command.cmd === 'close' ? () => process.exit(0) : undefined)
    },
    (error: unknown) => send({ type: 'reply', id: command.id, ok: false, error: error instanceof Error ? error.stack ?? error.message : String(error) }),
  )
})

send({ type: 'ready', port: app.port })
