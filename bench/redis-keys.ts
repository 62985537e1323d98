import Redis from 'ioredis'

/** Redis server version, or throws with a clear message when Redis is unreachable. */
export async function redisVersion(url: string): Promise<string> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null })
  try {
    await client.connect()
    const info = await client.info('server')
    return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown'
  } catch (error) {
    throw new Error(`Redis at ${url} is unreachable (set --redis-url or REDIS_URL): ${(error as Error).message}`)
  } finally {
    client.disconnect()
  }
}

/**
 * Deletes every key under `prefix:` (and only those) from the shared Redis. Never FLUSHes.
 * Resolves the number of keys deleted.
 */
export async function deleteRedisPrefix(url: string, prefix: string): Promise<number> {
  if (!/^ei-bench-[A-Za-z0-9_-]+$/.test(prefix)) throw new Error(`refusing to delete keys under an unexpected prefix ${JSON.stringify(prefix)}`)
  const client = new Redis(url, { maxRetriesPerRequest: 1 })
  let deleted = 0
  try {
    let cursor = '0'
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 2000)
      cursor = next
      if (keys.length > 0) deleted += await client.unlink(...keys)
    } while (cursor !== '0')
  } finally {
    client.disconnect()
  }
  return deleted
}

/** What one Redis server did over an interval: commands by name, their server time, and socket reads. */
export interface RedisActivity {
  /** Calls per command name (lower case), from `INFO commandstats`. */
  calls: Record<string, number>
  /**
   * CPU time of the Redis server's main thread, µs (`used_cpu_user_main_thread` +
   * `used_cpu_sys_main_thread` of `INFO cpu`): the thread that runs every command and script, and
   * reads and writes the client sockets, so it is what bounds the server. (`INFO commandstats`
   * would count a script's commands twice: in the script's time and in their own.)
   */
  usec: number
  /** Read events on client sockets (`total_reads_processed`): one per round trip a client makes. */
  reads: number
}

/** A snapshot of the counters `redisActivityBetween` subtracts. */
export async function redisCounters(client: Redis): Promise<RedisActivity> {
  const [commandstats, stats, cpu] = await Promise.all([client.info('commandstats'), client.info('stats'), client.info('cpu')])
  const calls: Record<string, number> = {}
  for (const match of commandstats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) calls[match[1]!] = Number(match[2])
  const seconds = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? Number.NaN)
  const usec = (seconds('used_cpu_user_main_thread') + seconds('used_cpu_sys_main_thread')) * 1e6
  const reads = Number(/total_reads_processed:(\d+)/.exec(stats)?.[1] ?? Number.NaN)
  return { calls, usec, reads }
}

/** `after - before`, leaving out the `info` calls the measuring itself made. */
export function redisActivityBetween(before: RedisActivity, after: RedisActivity): RedisActivity {
  const calls: Record<string, number> = {}
  for (const [name, count] of Object.entries(after.calls)) {
    const delta = count - (before.calls[name] ?? 0)
    if (delta > 0 && name !== 'info') calls[name] = delta
  }
  return { calls, usec: after.usec - before.usec, reads: after.reads - before.reads }
}
