import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest, type EventIngest } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { databaseUrl, dropSchemas, requirePostgres, sql, uniqueSchema } from '../helpers/postgres'
import { freePort } from '../helpers/process'

const prefix = uniqueSchema('pgs')
const open: EventIngest<any>[] = []
const make = async (options: Parameters<typeof createEventIngest>[0]) => {
  const ingest = createEventIngest({ onError: () => {}, ...options })
  open.push(ingest)
  await ingest.ready()
  return ingest
}

beforeAll(() => requirePostgres())
afterAll(async () => {
  await Promise.all(open.map((i) => i.close()))
  await dropSchemas(prefix)
})

describe('PostgreSQL storage', () => {
  it('is chosen by EVENT_STORAGE=postgres://… and keeps one queryable row per event, payload as jsonb', async () => {
    const schema = `${prefix}_env`
    const ingest = await make({ env: { EVENT_STORAGE: databaseUrl }, storage: { driver: 'postgres', url: databaseUrl, schema } })
    const events = [makeEvent({ id: 'row-1', name: 'OrderCreated', source: 'api', companyId: 'c-1', payload: { orderId: 'o-1', total: 42 } }), makeEvent({ id: 'row-2', subjectId: 's-2' })]
    expect(await ingest.ingest(events)).toMatchObject({ accepted: 2, duplicates: 0 })
    expect(await ingest.ingest(events)).toMatchObject({ accepted: 0, duplicates: 2 })
    const rows = await sql<{ id: string; name: string; source: string; company_id: string | null; subject_id: string | null; total: number; occurred_at: Date; received_at: Date }>(
      `SELECT id, name, source, company_id, subject_id, (payload->>'total')::int AS total, occurred_at, received_at FROM "${schema}".events ORDER BY id`,
    )
    expect(rows.map((r) => [r.id, r.name, r.source, r.company_id, r.subject_id])).toEqual([
      ['row-1', 'OrderCreated', 'api', 'c-1', null],
      ['row-2', events[1]!.name, events[1]!.source, null, 's-2'],
    ])
    expect(rows[0]!.total).toBe(42)
    expect(rows[0]!.occurred_at.toISOString()).toBe(new Date(events[0]!.occurredAt).toISOString())
    expect(Math.abs(rows[0]!.received_at.getTime() - Date.now())).toBeLessThan(60_000)
  })

  it('takes postgresql:// URLs as well', async () => {
    const schema = `${prefix}_scheme`
    const ingest = await make({ env: {}, storage: { driver: 'postgres', url: databaseUrl.replace(/^postgres:/, 'postgresql:'), schema } })
    expect(await ingest.ingest([makeEvent({ id: 'scheme-1' })])).toMatchObject({ accepted: 1 })
    expect(await sql(`SELECT id FROM "${schema}".events`)).toEqual([{ id: 'scheme-1' }])
  })

  it('stores payloads with NUL and lone surrogates, which jsonb cannot hold: exact in the log, U+FFFD in the row', async () => {
    const schema = `${prefix}_nul`
    const ingest = await make({ env: {}, storage: { driver: 'postgres', url: databaseUrl, schema } })
    const payload = { nul: 'a\u0000b', lone: 'x\ud800y', escaped: 'c\\u0000d', pair: '😀' }
    expect(await ingest.ingest([makeEvent({ id: 'nul\u0000id', payload })])).toMatchObject({ accepted: 1 })
    expect((await ingest.log!.get('nul\u0000id'))?.payload).toEqual(payload)
    const rows = await sql<{ id: string; payload: Record<string, string> }>(`SELECT id, payload FROM "${schema}".events`)
    expect(rows).toEqual([{ id: 'nul\ufffdid', payload: { nul: 'a\ufffdb', lone: 'x\ufffdy', escaped: 'c\\u0000d', pair: '😀' } }])
  })

  it('deletes a pruned batch\'s rows with its record, keeping newer rows', async () => {
    const schema = `${prefix}_prune`
    const ingest = await make({ env: {}, storage: { driver: 'postgres', url: databaseUrl, schema } })
    await ingest.ingest([makeEvent({ id: 'old-1' }), makeEvent({ id: 'old-2' })], { receivedAt: Date.now() - 3 * 3_600_000 })
    await ingest.ingest([makeEvent({ id: 'new-1' })])
    expect(await ingest.prune({ olderThan: Date.now() - 3_600_000 })).toMatchObject({ batches: 1 })
    expect(await sql(`SELECT id FROM "${schema}".events ORDER BY id`)).toEqual([{ id: 'new-1' }])
  })

  it('accepts a schema name of 63 characters, the longest identifier', async () => {
    const schema = `${prefix}_`.padEnd(63, 'x')
    const ingest = await make({ env: {}, storage: { driver: 'postgres', url: databaseUrl, schema } })
    expect(await ingest.ingest([makeEvent({ id: 'long-schema' })])).toMatchObject({ accepted: 1 })
    expect(await sql(`SELECT id FROM "${schema}".events`)).toEqual([{ id: 'long-schema' }])
  })

  it('creates the schema once when instances start together (advisory lock)', async () => {
    const schema = `${prefix}_race`
    const all = await Promise.all(Array.from({ length: 4 }, () => make({ env: {}, storage: { driver: 'postgres', url: databaseUrl, schema } })))
    const results = await Promise.all(all.map((ingest, i) => ingest.ingest([makeEvent({ id: 'race-shared' }), makeEvent({ id: `race-${i}` })])))
    expect(results.reduce((sum, r) => sum + r.accepted, 0)).toBe(5)
    expect(results.reduce((sum, r) => sum + r.duplicates, 0)).toBe(3)
  })

  it('with createSchema: false, refuses to start without the tables, naming them, and runs on docs/postgres-schema.sql', async () => {
    const schema = `${prefix}_ddl`
    const storage = { driver: 'postgres' as const, url: databaseUrl, schema, createSchema: false }
    const missing = createEventIngest({ env: {}, storage, onError: () => {} })
    await expect(missing.ready()).rejects.toThrow(new RegExp(`postgres table "${schema}".events does not exist; run docs/postgres-schema.sql`))
    await missing.close()
    const file = readFileSync(new URL('../../docs/postgres-schema.sql', import.meta.url), 'utf8')
    await sql(file.replaceAll('event_ingest', `"${schema}"`))
    const ingest = await make({ env: {}, storage })
    expect(await ingest.ingest([makeEvent({ id: 'ddl-1' })])).toMatchObject({ accepted: 1 })
    expect(await ingest.ingest([makeEvent({ id: 'ddl-1' })])).toMatchObject({ duplicates: 1 })
    expect((await ingest.log!.get('ddl-1'))?.id).toBe('ddl-1')
  })

  it('closes the pool it created on close()', async () => {
    const schema = `${prefix}_close`
    const app = `ei_close_${process.pid}_${Date.now().toString(36)}`
    const connections = async () => Number((await sql<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [app]))[0]!.n)
    const ingest = createEventIngest({ env: {}, storage: { driver: 'postgres', url: `${databaseUrl}?application_name=${app}`, schema } })
    await ingest.ready()
    await ingest.ingest([makeEvent({ id: 'close-1' })])
    expect(await connections()).toBeGreaterThan(0)
    await ingest.close()
    for (let i = 0; i < 50 && (await connections()) > 0; i++) await new Promise((r) => setTimeout(r, 50))
    expect(await connections()).toBe(0)
  })

  it('answers 503 storage_unavailable when the database cannot be reached, and stores nothing', async () => {
    const port = await freePort()
    const ingest = createEventIngest({ env: {}, storage: { driver: 'postgres', url: `postgres://postgres@127.0.0.1:${port}/test`, schema: `${prefix}_down`, connectTimeout: 500 }, onError: () => {} })
    open.push(ingest)
    await ingest.ready()
    await expect(ingest.ingest([makeEvent({ id: 'down-1' })])).rejects.toMatchObject({ code: 'storage_unavailable', status: 503, message: expect.stringMatching(/storage is unavailable/) })
  })
})
