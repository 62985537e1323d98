import { setTimeout as sleep } from 'node:timers/promises'

/** Anything that lists stored events page by page (an EventIngest, its log). */
interface Lister {
  events(query: { since?: number; limit?: number; cursor?: string }): Promise<{ events: { id: string }[]; nextCursor: string | null }>
}

/** How many stored copies of each id `lister` holds, over every page. */
export async function storedCounts(lister: Lister): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  let cursor: string | undefined
  do {
    const page = await lister.events({ since: 0, limit: 1000, ...(cursor ? { cursor } : {}) })
    for (const event of page.events) counts.set(event.id, (counts.get(event.id) ?? 0) + 1)
    cursor = page.nextCursor ?? undefined
  } while (cursor)
  return counts
}

/** Reads until `done` says so, every 100 ms, for at most `withinMs`; throws with the last value. */
export async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, withinMs = 5000): Promise<T> {
  const deadline = performance.now() + withinMs
  for (;;) {
    const value = await read()
    if (done(value)) return value
    if (performance.now() > deadline) throw new Error(`${what}: not reached within ${withinMs} ms; last ${JSON.stringify(value)}`)
    await sleep(100)
  }
}
