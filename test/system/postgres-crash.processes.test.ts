/**
 * An instance killed (kill -9) on PostgreSQL with many batches in flight. PostgreSQL stores a
 * batch in one transaction (its event rows, record, claims and outbox entry), so a batch is
 * stored whole or not at all whenever the instance dies: one row per id, and every batch's rows
 * all there or none (test/helpers/killed-instance-suite.ts says what else is checked).
 *
 * Child processes are event-ingest instances behind real HTTP servers on one schema of the shared
 * PostgreSQL (DATABASE_URL), dropped afterwards.
 */
import { fileURLToPath } from 'node:url'
import { expect } from 'vitest'
import { createEventIngest } from '../../src/index'
import { BATCH, defineKilledInstanceSuite } from '../helpers/killed-instance-suite'
import { databaseUrl, dropSchemas, requirePostgres, sql, uniqueSchema } from '../helpers/postgres'

const schema = uniqueSchema('crash')

defineKilledInstanceSuite({
  label: 'PostgreSQL',
  childScript: fileURLToPath(new URL('../helpers/postgres-ingest-process.ts', import.meta.url)),
  childArgs: [databaseUrl, schema],
  async open() {
    await requirePostgres()
    const observer = createEventIngest({ env: {}, storage: { driver: 'postgres', url: databaseUrl, schema }, instanceId: 'crash_observer' })
    await observer.ready()
    return observer
  },
  cleanup: () => dropSchemas(schema),
  async checkStored(_observer, counts) {
    const rows = await sql<{ id: string; batch_key: string }>(`SELECT id, batch_key FROM "${schema}".events`)
    expect(rows.length).toBe(counts.size)
    const perBatch = new Map<string, number>()
    for (const row of rows) perBatch.set(row.batch_key, (perBatch.get(row.batch_key) ?? 0) + 1)
    expect([...perBatch.values()].filter((n) => n !== BATCH)).toEqual([])
  },
})
