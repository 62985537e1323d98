import type { Storage } from 'unstorage'

// The instances that write stats buckets to one storage, each with when it was last seen: one
// record at `${prefix}:instances`, read by every snapshot and rewritten about once a minute.

const MINUTE = 60_000
/** How stale this instance's registry entry may get before it is rewritten. */
export const REGISTRY_REFRESH_MS = MINUTE
/**
 * An instance's `lastSeen` may lag its newest bucket by up to {@link REGISTRY_REFRESH_MS}; one more
 * minute absorbs clock skew between instances.
 */
export const REGISTRY_GRACE_MS = 2 * MINUTE

/** Instance id to when it was last seen (ms); entries that are not a number are left out. */
export async function readRegistry(storage: Storage, key: string): Promise<Record<string, number>> {
  const value: unknown = await storage.getItem(key)
  const registry: Record<string, number> = {}
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const [id, lastSeen] of Object.entries(value)) if (typeof lastSeen === 'number') registry[id] = lastSeen
  }
  return registry
}

/**
 * Records `instanceId` as seen at `at`, dropping instances not seen for `windowMs` (and the grace).
 * Read-modify-write, but only about once a minute; an update lost to a race is redone on the next one.
 * Resolves with the time the registry now holds for this instance.
 */
export async function register(storage: Storage, key: string, instanceId: string, at: number, windowMs: number): Promise<number> {
  const registry = await readRegistry(storage, key)
  const own = registry[instanceId]
  if (own !== undefined && at - own < REGISTRY_REFRESH_MS) return own
  const cutoff = at - windowMs - REGISTRY_GRACE_MS
  const next: Record<string, number> = {}
  for (const [id, lastSeen] of Object.entries(registry)) if (lastSeen >= cutoff) next[id] = lastSeen
  next[instanceId] = at
  await storage.setItem(key, next)
  return at
}
