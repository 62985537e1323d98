/**
 * Child process of the PostgreSQL multi-process tests, run with tsx: one event-ingest instance on
 * a schema of the shared PostgreSQL behind a real h3 HTTP server on a free loopback port. Prints
 * `LISTENING <url>` once it serves. Stats flush every 100 ms, or every `statsFlushMs` when given.
 *
 * Exits (after closing the core) on SIGTERM, SIGINT, or when its stdin closes.
 *
 * Usage: node --import tsx test/helpers/postgres-ingest-process.ts <databaseUrl> <schema> <instanceId> <adminToken> [statsFlushMs]
 */
import { h3Host, startHost } from './servers'
import { closeOnExit } from './process'

const [url, schema, instanceId, adminToken, statsFlushMs] = process.argv.slice(2)
if (!url || !schema || !instanceId || !adminToken) {
  throw new Error('usage: postgres-ingest-process.ts <databaseUrl> <schema> <instanceId> <adminToken> [statsFlushMs]')
}

const host = await startHost(h3Host, {
  storage: { driver: 'postgres', url, schema },
  instanceId,
  adminToken,
  stats: { flushIntervalMs: statsFlushMs ? Number(statsFlushMs) : 100 },
})
process.stdout.write(`LISTENING ${host.url}\n`)

closeOnExit(host)
