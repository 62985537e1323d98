import { defineDriver } from 'unstorage'

/** The part of a `pg` Pool this module uses. */
export interface PgPool {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>
  connect(): Promise<PgClient>
  end(): Promise<void>
  on(event: 'error', listener: (error: Error) => void): unknown
}

/** A client checked out of the pool, for a transaction. */
export interface PgClient {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>
  release(error?: Error | boolean): void
}

/** What the postgres driver hands the batch store: the pool, the quoted schema, and a gate that opens once the schema exists. */
export interface PostgresDriverInstance {
  pool: PgPool
  /** The schema, quoted as an SQL identifier. */
  schema: string
  /** Resolves once the schema is there (created under an advisory lock, or checked); retried on the next call after a failure. */
  ready(): Promise<void>
}

/** Options of {@link postgresDriver}. */
export interface PostgresDriverOptions {
  pool: PgPool
  schema: string
  createSchema: boolean
  /** Whether `dispose` ends the pool (event-ingest created it). */
  ownsPool: boolean
}

/** The schema's DDL, for one schema name: `docs/postgres-schema.sql` with the name replaced. */
export function schemaStatements(quotedSchema: string): string {
  return SCHEMA_SQL.replaceAll('event_ingest.', `${quotedSchema}.`).replace('CREATE SCHEMA IF NOT EXISTS event_ingest', `CREATE SCHEMA IF NOT EXISTS ${quotedSchema}`)
}

// The statements of docs/postgres-schema.sql without its comments: change both together (the createSchema: false test runs the file).
const SCHEMA_SQL = `CREATE SCHEMA IF NOT EXISTS event_ingest;
CREATE TABLE IF NOT EXISTS event_ingest.events (
  id_key text COLLATE "C" PRIMARY KEY,
  id text NOT NULL,
  name text NOT NULL,
  source text NOT NULL,
  occurred_at timestamptz NOT NULL,
  received_at timestamptz NOT NULL,
  company_id text,
  subject_id text,
  payload jsonb NOT NULL,
  batch_key text NOT NULL,
  dedupe_until timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS events_id_idx ON event_ingest.events (id);
CREATE INDEX IF NOT EXISTS events_received_at_idx ON event_ingest.events (received_at DESC);
CREATE INDEX IF NOT EXISTS events_name_received_at_idx ON event_ingest.events (name, received_at DESC);
CREATE INDEX IF NOT EXISTS events_batch_key_idx ON event_ingest.events (batch_key);
CREATE TABLE IF NOT EXISTS event_ingest.kv (
  key text COLLATE "C" PRIMARY KEY,
  value text NOT NULL
);`


/** Quotes an SQL identifier. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** Escapes `%`, `_` and `\` for a LIKE prefix. */
function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`
}

/** Where batch records live, relative to the storage: `<prefix>:b:…` (see layout.ts). */
const BATCH_KEY = /(^|:)b:/

/**
 * An unstorage driver over one key-value table (`<schema>.kv`) for everything the log keeps by key;
 * the events themselves are rows of `<schema>.events`, written by the batch store
 * (postgres-store.ts). Removing a batch record (retention) removes its event rows in the same
 * statement's transaction.
 */
export const postgresDriver = defineDriver((options: PostgresDriverOptions) => {
  const { pool } = options
  const schema = quoteIdentifier(options.schema)
  const kv = `${schema}.kv`
  let created: Promise<void> | undefined
  const ready = (): Promise<void> => {
    created ??= (options.createSchema ? createSchema(pool, options.schema, schema) : checkSchema(pool, schema)).catch((error: unknown) => {
      created = undefined
      throw error
    })
    return created
  }
  const query = async (text: string, values?: unknown[]) => {
    await ready()
    return pool.query(text, values)
  }
  const instance: PostgresDriverInstance = { pool, schema, ready }
  return {
    name: 'event-ingest-postgres',
    options,
    getInstance: () => instance,
    async hasItem(key) {
      return ((await query(`SELECT 1 FROM ${kv} WHERE key = $1`, [key])).rowCount ?? 0) > 0
    },
    async getItem(key) {
      const { rows } = await query(`SELECT value FROM ${kv} WHERE key = $1`, [key])
      return rows.length > 0 ? (rows[0]!.value as string) : null
    },
    async setItem(key, value) {
      await query(`INSERT INTO ${kv} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [key, value])
    },
    async removeItem(key) {
      if (BATCH_KEY.test(key)) {
        await query(`WITH gone AS (DELETE FROM ${kv} WHERE key = $1) DELETE FROM ${schema}.events WHERE batch_key = $1`, [key])
        return
      }
      await query(`DELETE FROM ${kv} WHERE key = $1`, [key])
    },
    async getKeys(base) {
      const { rows } = base ? await query(`SELECT key FROM ${kv} WHERE key LIKE $1`, [likePrefix(base)]) : await query(`SELECT key FROM ${kv}`)
      return rows.map((row) => row.key as string)
    },
    async clear(base) {
      if (base) await query(`DELETE FROM ${kv} WHERE key LIKE $1`, [likePrefix(base)])
      else await query(`DELETE FROM ${kv}`)
    },
    async dispose() {
      if (options.ownsPool) await pool.end()
    },
  }
})

/** Creates the schema under an advisory lock, so instances starting together do not race on `CREATE … IF NOT EXISTS`. */
async function createSchema(pool: PgPool, name: string, schema: string): Promise<void> {
  const client = await pool.connect()
  try {
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [`event-ingest:${name}`])
    try {
      await client.query(schemaStatements(schema))
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`event-ingest:${name}`])
    }
    client.release()
  } catch (error) {
    client.release(error as Error)
    throw error
  }
}

/** With `createSchema: false`: the tables must be there, or a clear error says which is missing. */
async function checkSchema(pool: PgPool, schema: string): Promise<void> {
  for (const table of ['events', 'kv']) {
    const { rows } = await pool.query('SELECT to_regclass($1) AS found', [`${schema}.${table}`])
    if (!rows[0]?.found) throw new Error(`[event-ingest] postgres table ${schema}.${table} does not exist; run docs/postgres-schema.sql for this schema, or set storage.createSchema to true`)
  }
}
