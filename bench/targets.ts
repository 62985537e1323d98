/** A web framework, or bare `node:http`. */
export type Framework = 'node' | 'h3' | 'express' | 'fastify' | 'koa'

/** Where a measured event-ingest target stores events. */
export type StorageKind = 'memory' | 'fs' | 'redis' | 'postgres'

/** One server the bench starts in its own process and drives over loopback. */
export interface Target {
  /** Short id used on the command line (`--targets`) and in the JSON results. */
  id: string
  /** The name in the report. */
  label: string
  framework: Framework
  /**
   * `bare`: a route that only reads, `JSON.parse`s, checks for an array and keeps it. `hand`: the
   * route a team writes instead (bench/hand.ts: schema validation, dedupe by id, keeping). `ours`:
   * event-ingest mounted.
   */
  kind: 'bare' | 'hand' | 'ours'
  /** Storage of an event-ingest target or a hand-written route. */
  storage?: StorageKind
  /** Environment the server process starts with, over the runner's. */
  env?: Record<string, string>
  /**
   * A bare route that also keeps every body it receives, for the life of the process, as the
   * framework hands it over (bytes, or the text where the framework reads the body as text).
   */
  keepsBodies?: boolean
  /** A machine experiment: measures a setting of the machine, not the code; run only with `--machine`. */
  machine?: boolean
}

/**
 * glibc (2.35 and later) puts the memory malloc hands out on transparent huge pages: one page fault
 * per 2 MiB instead of per 4 KiB, where the kernel allows it (THP `always` or `madvise`).
 */
export const HUGE_PAGES_ENV = { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' }

/**
 * Every target, in the order each repetition runs them. The bare routes use each framework's own
 * idiomatic JSON body reading (h3 `event.req.json()`, `express.json()`, Fastify's built-in parser,
 * `@koa/bodyparser`); event-ingest is mounted as `test/helpers/hosts.ts` mounts it, without a host
 * parser in front.
 */
export const targets: readonly Target[] = [
  { id: 'node', label: 'bare node:http', framework: 'node', kind: 'bare' },
  // Each bare server also once keeping every body it receives, as the memory driver keeps what it
  // stores: the baselines of the goals taken as read-parse-keep (see the report).
  { id: 'node-keep', label: 'bare node:http keeping every body', framework: 'node', kind: 'bare', keepsBodies: true },
  { id: 'h3-bare', label: 'h3 bare route', framework: 'h3', kind: 'bare' },
  { id: 'h3-keep', label: 'h3 bare route keeping every body', framework: 'h3', kind: 'bare', keepsBodies: true },
  { id: 'h3', label: 'h3 + event-ingest (memory)', framework: 'h3', kind: 'ours', storage: 'memory' },
  // For reference, not a goal: the same server with malloc on huge pages (see the report); with --machine only.
  { id: 'h3-hugepages', label: 'h3 + event-ingest (memory, malloc on huge pages)', framework: 'h3', kind: 'ours', storage: 'memory', env: HUGE_PAGES_ENV, machine: true },
  { id: 'express-bare', label: 'Express bare route', framework: 'express', kind: 'bare' },
  { id: 'express-keep', label: 'Express bare route keeping every body', framework: 'express', kind: 'bare', keepsBodies: true },
  { id: 'express', label: 'Express + event-ingest (memory)', framework: 'express', kind: 'ours', storage: 'memory' },
  { id: 'fastify-bare', label: 'Fastify bare route', framework: 'fastify', kind: 'bare' },
  { id: 'fastify-keep', label: 'Fastify bare route keeping every body', framework: 'fastify', kind: 'bare', keepsBodies: true },
  { id: 'fastify', label: 'Fastify + event-ingest (memory)', framework: 'fastify', kind: 'ours', storage: 'memory' },
  { id: 'koa-bare', label: 'Koa bare route', framework: 'koa', kind: 'bare' },
  { id: 'koa-keep', label: 'Koa bare route keeping every body', framework: 'koa', kind: 'bare', keepsBodies: true },
  { id: 'koa', label: 'Koa + event-ingest (memory)', framework: 'koa', kind: 'ours', storage: 'memory' },
  // The routes a team writes instead, per framework and storage (bench/hand.ts): the baselines of the goals.
  ...handWritten('memory'),
  ...handWritten('redis'),
  { id: 'h3-fs', label: 'h3 + event-ingest (fs)', framework: 'h3', kind: 'ours', storage: 'fs' },
  // event-ingest on Redis in each framework; more storage targets (PostgreSQL, ...) go below, one line each.
  { id: 'h3-redis', label: 'h3 + event-ingest (Redis)', framework: 'h3', kind: 'ours', storage: 'redis' },
  { id: 'express-redis', label: 'Express + event-ingest (Redis)', framework: 'express', kind: 'ours', storage: 'redis' },
  { id: 'fastify-redis', label: 'Fastify + event-ingest (Redis)', framework: 'fastify', kind: 'ours', storage: 'redis' },
  { id: 'koa-redis', label: 'Koa + event-ingest (Redis)', framework: 'koa', kind: 'ours', storage: 'redis' },
  { id: 'h3-postgres', label: 'h3 + event-ingest (PostgreSQL)', framework: 'h3', kind: 'ours', storage: 'postgres' },
]

/** The hand-written route of every framework on `storage`. */
function handWritten(storage: 'memory' | 'redis'): Target[] {
  const names = { h3: 'h3', express: 'Express', fastify: 'Fastify', koa: 'Koa' } as const
  return (Object.keys(names) as (keyof typeof names)[]).map((framework) => ({
    id: storage === 'memory' ? `${framework}-hand` : `${framework}-hand-${storage}`,
    label: `${names[framework]} hand-written route (${storage === 'memory' ? 'memory' : 'Redis'})`,
    framework,
    kind: 'hand',
    storage,
  }))
}

/** The hand-written route of the same framework and storage as `target`, where there is one. */
export function handOf(target: Target): Target | undefined {
  return targets.find((t) => t.kind === 'hand' && t.framework === target.framework && t.storage === target.storage)
}

/** The bare route of the same framework as `target` (bare node for node), keeping a bounded ring. */
export function bareOf(target: Target): Target {
  return targets.find((t) => t.kind === 'bare' && t.framework === target.framework && !t.keepsBodies)!
}

/** The bare route of the same framework as `target` that also keeps every body it receives. */
export function keepingOf(target: Target): Target {
  return targets.find((t) => t.kind === 'bare' && t.framework === target.framework && t.keepsBodies === true)!
}

/** The path every target serves ingest on. */
export const INGEST_PATH = '/events/ingest'
