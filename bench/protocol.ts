/** How the bench runner configures one server process (passed as JSON in argv). */
export interface ServerConfig {
  /** A target id from `targets.ts`. */
  target: string
  /** Redis URL, for a Redis target. */
  redisUrl?: string
  /** Unique key prefix in Redis for this process. */
  redisBase?: string
  /** PostgreSQL URL and the schema of its own, for a postgres target. */
  postgresUrl?: string
  postgresSchema?: string
  /** Temp directory of an fs target. */
  fsDir?: string
  /** Admin token (stats and schema timing need admin access). */
  adminToken?: string
  /** Unique tag for ids of events loaded in-process. */
  tag: string
  /** The package as built for this run (`buildForBench`): what event-ingest targets load. */
  buildDir: string
  /** Where to write the source maps of our TypeScript modules on close (for profile positions). */
  sourceMapsOut?: string
}

/** Commands the runner sends over IPC; each is answered once with the same `id`. */
export type ServerCommand =
  | { id: number; cmd: 'cpu' }
  | { id: number; cmd: 'mem'; gc: boolean; dataBytes: boolean }
  | { id: number; cmd: 'counters' }
  | { id: number; cmd: 'load'; total: number; batchSize: number }
  | { id: number; cmd: 'close' }

/** `process.cpuUsage()` and the moment it was read. */
export interface CpuSample {
  /** µs of user CPU since the process started. */
  user: number
  /** µs of system CPU since the process started. */
  system: number
  /** `performance.timeOrigin + performance.now()`, in ms. */
  at: number
  /** The monotonic clock in µs (`process.hrtime`), the clock of V8's CPU profile timestamps. */
  monoUs: number
  /** Minor page faults since the process started (`process.resourceUsage().minorPageFault`). */
  minorFaults: number
}

/** `process.memoryUsage()` after an optional full GC. */
export interface MemorySample {
  at: number
  heapUsed: number
  heapTotal: number
  rss: number
  external: number
  /** Memory driver only: bytes of the stored keys and values (string lengths), when asked. */
  dataBytes?: number
  /** Events stored (event-ingest) or kept (bare) so far. */
  events: number
}

/** What the server counted since it started. */
export interface Counters {
  accepted: number
  duplicates: number
  rejected: number
}

export type ServerMessage =
  | { type: 'ready'; port: number }
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; error: string }
