import { execFile } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { freePort } from './process'

const execFileAsync = promisify(execFile)

/** The shared PostgreSQL the suite talks to: `DATABASE_URL`, default the local server. */
export const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** Fails (never skips) when the PostgreSQL the suite needs is unreachable. */
export async function requirePostgres(url = databaseUrl): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query('SELECT 1')
  } catch (error) {
    throw new Error(`PostgreSQL at ${url} is unreachable (set DATABASE_URL): ${(error as Error).message}`)
  } finally {
    await client.end().catch(() => {})
  }
}

/** A schema name prefix no other run uses (an SQL identifier, room left for a suffix). */
export function uniqueSchema(label: string): string {
  return `ei_test_${label}_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 48)
}

/** The schema for one key under a prefix: a valid identifier. */
export function schemaFor(prefix: string, key: string): string {
  return `${prefix}_${key.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 63)
}

/** Runs one query on its own connection. */
export async function sql<Row = Record<string, unknown>>(text: string, values: unknown[] = [], url = databaseUrl): Promise<Row[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  await client.connect()
  try {
    return (await client.query(text, values)).rows as Row[]
  } finally {
    await client.end().catch(() => {})
  }
}

/** Drops this run's schemas (and only those: every schema whose name starts with `prefix`). */
export async function dropSchemas(prefix: string, url = databaseUrl): Promise<void> {
  const rows = await sql<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)', [prefix], url)
  for (const { nspname } of rows) await sql(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`, [], url)
}

/** A private PostgreSQL cluster in a temp folder on a free port: for tests that stop the database. */
export interface OwnPostgres {
  url: string
  port: number
  /** Stops the server at once (`pg_ctl stop -m immediate`); `start()` brings it back on the same port. */
  stop(): Promise<void>
  start(): Promise<void>
  /** Stops the server and removes its folder. */
  dispose(): Promise<void>
}

const asPostgres = (args: string[]) => execFileAsync('runuser', ['-u', 'postgres', '--', ...args])

export async function startOwnPostgres(): Promise<OwnPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'ei-pg-'))
  chownSync(dir, Number((await execFileAsync('id', ['-u', 'postgres'])).stdout.trim()), Number((await execFileAsync('id', ['-g', 'postgres'])).stdout.trim()))
  const data = join(dir, 'data')
  const port = await freePort()
  await asPostgres(['/usr/local/bin/initdb', '-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8'])
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  async function start() {
    await asPostgres(['/usr/local/bin/pg_ctl', '-D', data, '-l', join(dir, 'log'), '-w', '-t', '30', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start'])
    await requirePostgres(url)
  }
  async function stop() {
    await asPostgres(['/usr/local/bin/pg_ctl', '-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {})
  }
  await start()
  return {
    url,
    port,
    start,
    stop,
    async dispose() {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
