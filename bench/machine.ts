import { readFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

/** What the numbers were measured on. */
export interface MachineInfo {
  cores: number
  cpuModel: string
  memoryGiB: number
  node: string
  platform: string
  /** name → installed version. */
  packages: Record<string, string>
  redis?: string
  /** The Redis targets used a redis-server the run started for itself. */
  redisOwn?: boolean
  /** µs per minor page fault when fresh memory is first touched (see {@link measurePageFault}). */
  pageFaultUs?: number
  /** The kernel's transparent huge pages mode (`always`, `madvise` or `never`), when it tells. */
  transparentHugePages?: string
  /** 1-minute load average when the run started and ended. */
  loadStart: number
  loadEnd?: number
}

const measuredPackages = ['event-ingest', 'h3', 'srvx', 'express', 'fastify', 'koa', '@koa/bodyparser', 'unstorage', 'zod', 'ioredis', 'autocannon', 'tsx']

function installedVersion(name: string): string {
  try {
    const path = name === 'event-ingest' ? `${root}package.json` : `${root}node_modules/${name}/package.json`
    return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version
  } catch {
    return 'not installed'
  }
}

export function machineInfo(): MachineInfo {
  const list = cpus()
  return {
    cores: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    packages: Object.fromEntries(measuredPackages.map((name) => [name, installedVersion(name)])),
    transparentHugePages: transparentHugePages(),
    loadStart: loadavg()[0]!,
  }
}

/**
 * The cost of a minor page fault here, in µs: 64 MiB of fresh memory touched once per 4 KiB page,
 * timed, divided by the faults it took. On a virtual machine it can be many times the cost on
 * bare metal, and it is paid for every page a server keeps.
 */
export function measurePageFault(): number {
  const bytes = 64 * 2 ** 20
  const before = process.resourceUsage().minorPageFault
  const started = performance.now()
  const block = Buffer.allocUnsafeSlow(bytes)
  for (let at = 0; at < bytes; at += 4096) block[at] = 1
  const ms = performance.now() - started
  const faults = process.resourceUsage().minorPageFault - before
  return faults > 0 ? (ms * 1000) / faults : Number.NaN
}

/** The selected mode in `/sys/kernel/mm/transparent_hugepage/enabled` (`always [madvise] never`). */
function transparentHugePages(): string | undefined {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1]
  } catch {
    return undefined
  }
}

/** The 1-minute load average now. */
export function currentLoad(): number {
  return loadavg()[0]!
}
