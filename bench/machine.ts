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
    loadStart: loadavg()[0]!,
  }
}

/** The 1-minute load average now. */
export function currentLoad(): number {
  return loadavg()[0]!
}
