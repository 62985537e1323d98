import { readFileSync, readlinkSync } from 'node:fs'
import { hostname } from 'node:os'

/**
 * Who a process is, precisely enough for another process to tell, later, that it is gone: its
 * host, the kernel's boot, its pid namespace, its pid and the moment it started (so a pid used
 * again by a new process is not taken for it). Linux only; elsewhere there is no identity, and
 * nothing is ever judged gone.
 */
export interface ProcessIdentity {
  host: string
  boot: string
  pidNamespace: string
  pid: number
  /** Start time of the process in clock ticks since boot (`/proc/<pid>/stat`, field 22). */
  start: string
}

let own: ProcessIdentity | null | undefined

/** This process's identity; undefined where it cannot be known (not Linux, no /proc). */
export function processIdentity(): ProcessIdentity | undefined {
  if (own === undefined) {
    try {
      const start = startTime(process.pid)
      own = start === undefined ? null : { host: hostname(), boot: bootId(), pidNamespace: readlinkSync('/proc/self/ns/pid'), pid: process.pid, start }
    } catch {
      own = null
    }
  }
  return own ?? undefined
}

/** Parses an identity written by {@link processIdentity}; undefined for anything else. */
export function parseIdentity(value: unknown): ProcessIdentity | undefined {
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      return undefined
    }
  }
  if (typeof value !== 'object' || value === null) return undefined
  const { host, boot, pidNamespace, pid, start } = value as Record<string, unknown>
  if (typeof host !== 'string' || typeof boot !== 'string' || typeof pidNamespace !== 'string' || typeof start !== 'string') return undefined
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return undefined
  return { host, boot, pidNamespace, pid, start }
}

/**
 * Whether the process `identity` names has certainly ended: it ran on this host, in this boot and
 * in this pid namespace (so its pid means here what it meant there), and no process with its pid
 * and start time exists. False whenever that cannot be known for certain: another host or
 * container, a process that still exists (stopped or a zombie included), a pid not ours to signal.
 */
export function isGone(identity: ProcessIdentity): boolean {
  const self = processIdentity()
  if (!self || identity.host !== self.host || identity.boot !== self.boot || identity.pidNamespace !== self.pidNamespace) return false
  if (identity.pid === self.pid) return identity.start !== self.start
  try {
    process.kill(identity.pid, 0)
  } catch (error) {
    // ESRCH: no such process. EPERM: it exists, another user's.
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') return false
    return true
  }
  // A process has that pid: gone only if it is another one, started at another time.
  const start = startTime(identity.pid)
  return start !== undefined && start !== identity.start
}

function bootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
}

/** Field 22 of /proc/<pid>/stat, counted after the command name (which may hold spaces and parentheses). */
function startTime(pid: number): string | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields from the third on: the state is field 3, the start time field 22.
  return fields[22 - 3]
}
