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
