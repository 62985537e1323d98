import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeEvent } from '../helpers/fixtures'
import { sql, startOwnPostgres, type OwnPostgres } from '../helpers/postgres'
import { h3Host, startHost, type RunningHost } from '../helpers/servers'

/**
 * PostgreSQL going away and coming back, over real HTTP, on a cluster of the test's own (initdb in
 * a temp folder, never the shared server): while it is down every ingest answers 503
 * storage_unavailable with Retry-After within a bound, a 200 always means the rows are there, and
 * once it is back the core recovers by itself and a retried batch is stored, not reported a duplicate.
 */

const RETRY_AFTER_S = 1
/** A bound on hanging, not a performance claim. */
const ANSWER_BOUND_MS = 4000

async function post(url: string, events: Record<string, unknown>[]) {
  const started = performance.now()
  const response = await fetch(`${url}/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(events), signal: AbortSignal.timeout(10_000) })
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body: JSON.parse(await response.text()), elapsed: performance.now() - started }
}

const batch = (label: string, n: number) => Array.from({ length: n }, (_, i) => makeEvent({ id: `${label}-${i}` }))

describe('PostgreSQL faults (own cluster)', () => {
  let db: OwnPostgres
  let host: RunningHost
  beforeAll(async () => {
    db = await startOwnPostgres()
    host = await startHost(h3Host, { storage: { driver: 'postgres', url: db.url, schema: 'faults', connectTimeout: 500, statementTimeout: 1000 }, storageTimeoutMs: 1500, retryAfterSeconds: RETRY_AFTER_S, onError: () => {} })
  }, 60_000)
  afterAll(async () => {
    await host?.close()
    await db?.dispose()
  }, 60_000)

  it('answers 503 storage_unavailable while the database is down, loses nothing acknowledged, and recovers when it is back', async () => {
    const acknowledged: string[] = []
    const before = await post(host.url, batch('before', 3))
    expect(before.status).toBe(200)
    acknowledged.push(...batch('before', 3).map((e) => e.id as string))

    await db.stop()
    const down = await Promise.all([post(host.url, batch('down-a', 2)), post(host.url, batch('down-b', 2))])
    for (const answer of down) {
      expect(answer.status, JSON.stringify(answer.body)).toBe(503)
      expect(answer.body.code).toBe('storage_unavailable')
      expect(answer.body.message).toMatch(/storage/)
      expect(answer.retryAfter).toBe(String(RETRY_AFTER_S))
      expect(answer.elapsed).toBeLessThan(ANSWER_BOUND_MS)
    }

    await db.start()
    // Back by itself: the pool makes new connections; the first requests may still meet a dead one.
    let retried: Awaited<ReturnType<typeof post>> | undefined
    for (let i = 0; i < 20; i++) {
      retried = await post(host.url, batch('down-a', 2))
      if (retried.status === 200) break
      await sleep(250)
    }
    expect(retried!.status).toBe(200)
    // A batch answered 503 was not stored: its retry is accepted, not a duplicate.
    expect(retried!.body).toEqual({ accepted: 2, duplicates: 0, rejected: [] })
    acknowledged.push('down-a-0', 'down-a-1')
    const after = await post(host.url, batch('after', 2))
    expect(after.status).toBe(200)
    acknowledged.push('after-0', 'after-1')

    const rows = await sql<{ id: string }>('SELECT id FROM faults.events', [], db.url)
    const stored = new Set(rows.map((r) => r.id))
    for (const id of acknowledged) expect(stored.has(id), id).toBe(true)
    expect(stored.has('down-b-0')).toBe(false)
  }, 60_000)
})
