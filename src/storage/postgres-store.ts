import { normalizeKey, type Storage } from 'unstorage'
import type { AtomicBatch, AtomicBatchStore, AtomicResult } from './atomic'
import { claimBase, idKey, parseClaim } from './layout'
import type { PostgresDriverInstance } from './postgres-driver'

interface StoredEvent {
  id: string
  name: string
  source: string
  occurredAt: string
  companyId?: string
  subjectId?: string
  payload: unknown
}

/**
 * What a row can hold of a value: PostgreSQL's text and jsonb hold no NUL and no lone surrogate,
 * which JSON allows. The row gets U+FFFD in their place; the record beside it keeps the event exactly.
 */
const UNSTORABLE_ESCAPE = /(?<!\\)((?:\\\\)*)\\u(0000|d[89a-f][0-9a-f]{2})/gi
const rowJson = (value: unknown) => JSON.stringify(value ?? {}).replace(UNSTORABLE_ESCAPE, '$1\\ufffd')
const rowText = (value: string | undefined) => (value === undefined ? null : value.replaceAll('\0', '\ufffd'))

interface MountedDriver {
  name?: string
  getInstance?: () => unknown
}

/** The events of a record as the log writes it (`{"v":1,"receivedAt":…,"events":[…]}`). */
function recordEvents(record: string | Uint8Array): { receivedAt: number; events: StoredEvent[] } {
  const value = JSON.parse(typeof record === 'string' ? record : new TextDecoder().decode(record)) as { receivedAt: number; events: StoredEvent[] }
  return { receivedAt: value.receivedAt, events: value.events }
}

/**
 * The one-step batch write on PostgreSQL ({@link AtomicBatchStore}): one transaction inserts the
 * batch's events as rows with `ON CONFLICT (id) DO NOTHING`, and writes the record of exactly the
 * rows it inserted and the outbox entry beside it, or nothing. The primary key is the claim: a
 * concurrent transaction inserting the same id waits for this one and then skips it, so two
 * instances never both store an id, and nothing is left to take over after a crash (a transaction
 * that did not commit left nothing). Defined when the log's records, outbox and claims are all on
 * event-ingest's postgres driver.
 *
 * @example
 * const store = postgresBatchStore(storage, 'events')
 * if (store) await store.append(batch)
 */
export function postgresBatchStore(storage: Storage, base: string): AtomicBatchStore | undefined {
  const drivers = ['b', 'o', 'd'].map((part) => (storage.getMount(`${base}:${part}`) as { driver: MountedDriver }).driver)
  const driver = drivers[0]!
  if (drivers.some((other) => other !== driver)) return undefined
  if (driver.name !== 'event-ingest-postgres' || typeof driver.getInstance !== 'function') return undefined
  const { pool, schema, ready } = driver.getInstance() as PostgresDriverInstance
  const claims = normalizeKey(claimBase(base))
  // Rows are inserted in id_key order, so overlapping batches lock them in one order (no deadlock).
  // A row whose dedupe window has passed (dedupe_until at or before this claim's time) is taken
  // over by the new event; any other conflict is a duplicate, and the row is left as it was.
  const insertEvents = `INSERT INTO ${schema}.events AS old (id_key, id, name, source, occurred_at, received_at, company_id, subject_id, payload, batch_key, dedupe_until)
SELECT e.id_key, e.id, e.name, e.source, e.occurred_at, to_timestamp($9::double precision / 1000), e.company_id, e.subject_id, e.payload::jsonb, $10, to_timestamp(($11::double precision + $12) / 1000)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[]) AS e(id_key, id, name, source, occurred_at, company_id, subject_id, payload)
ORDER BY e.id_key
ON CONFLICT (id_key) DO UPDATE SET id = EXCLUDED.id, name = EXCLUDED.name, source = EXCLUDED.source, occurred_at = EXCLUDED.occurred_at, received_at = EXCLUDED.received_at,
  company_id = EXCLUDED.company_id, subject_id = EXCLUDED.subject_id, payload = EXCLUDED.payload, batch_key = EXCLUDED.batch_key, dedupe_until = EXCLUDED.dedupe_until
WHERE old.dedupe_until <= to_timestamp($11::double precision / 1000)
RETURNING id_key`
  const putKv = `INSERT INTO ${schema}.kv (key, value) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`

  return {
    async append(batch: AtomicBatch): Promise<AtomicResult> {
      await ready()
      const { receivedAt, events: all } = recordEvents(batch.record())
      // Each id once (its first place), as `ids` holds them: one statement may not touch a row twice.
      const seen = new Set<string>()
      const events = all.filter((e) => !seen.has(e.id) && (seen.add(e.id), true))
      const batchKey = normalizeKey(batch.batchKey)
      const claimedAt = parseClaim(batch.claim).at
      const keys = events.map((e) => idKey(e.id))
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        const { rows } = await client.query(insertEvents, [
          keys,
          events.map((e) => rowText(e.id)),
          events.map((e) => rowText(e.name)),
          events.map((e) => rowText(e.source)),
          events.map((e) => e.occurredAt),
          events.map((e) => rowText(e.companyId)),
          events.map((e) => rowText(e.subjectId)),
          events.map((e) => rowJson(e.payload)),
          receivedAt,
          batchKey,
          claimedAt,
          Math.max(1, Math.ceil(batch.windowMs)),
        ])
        const inserted = new Set(rows.map((row) => row.id_key as string))
        const duplicates: number[] = []
        const stored: number[] = []
        batch.ids.forEach((id, p) => (inserted.has(idKey(id)) ? stored : duplicates).push(p))
        if (stored.length > 0) {
          const record = batch.record(duplicates.length === 0 ? undefined : stored)
          const keys = [batchKey]
          const values = [typeof record === 'string' ? record : new TextDecoder().decode(record)]
          // The claims, by key as the log reads them (`get(id)` finds the batch through its claim).
          for (const p of stored) {
            keys.push(`${claims}:${idKey(batch.ids[p]!)}`)
            values.push(batch.claim)
          }
          if (batch.outbox) {
            keys.push(normalizeKey(batch.outbox.key))
            values.push(batch.outbox.entry(stored.length))
          }
          await client.query(putKv, [keys, values])
        }
        await client.query('COMMIT')
        client.release()
        return { duplicates }
      } catch (error) {
        // A broken connection is dropped from the pool; a rolled-back transaction stored nothing.
        await client.query('ROLLBACK').catch(() => {})
        client.release(error as Error)
        throw error
      }
    },
  }
}
