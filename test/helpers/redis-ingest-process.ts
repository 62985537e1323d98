/**
 * Child process of test/redis-multiprocess.test.ts, run with tsx: one event-ingest instance on a
 * Redis prefix behind a real h3 HTTP server on a free loopback port. Prints `LISTENING <url>` once
 * it serves. Stats flush every 100 ms so other instances see its counts quickly, or every
 * `statsFlushMs` when given. `envJson`: the core's environment variables as a JSON object (such as
 * `EVENT_INGEST_TOKEN` and `EVENT_PUBLISHABLE_KEYS`); none by default.
 *
 * Exits (after closing the core, which flushes its stats) on SIGTERM, SIGINT, or when its stdin
 * closes, so it never outlives a test run that dies without killing it.
 *
 * Usage: node --import tsx test/helpers/redis-ingest-process.ts <redisUrl> <base> <instanceId> <adminToken> [statsFlushMs] [envJson]
 *
 * With RATE_LIMITS set (JSON), that is the core's `rateLimits` option.
 */
import { h3Host, startHost } from './servers'
import { closeOnExit } from './process'

const [url, base, instanceId, adminToken, statsFlushMs, envJson] = process.argv.slice(2)
if (!url || !base || !instanceId || !adminToken) {
  throw new Error('usage: redis-ingest-process.ts <redisUrl> <base> <instanceId> <adminToken>')
}

const host = await startHost(h3Host, {
  storage: { driver: 'redis', url, base },
  instanceId,
  adminToken,
  stats: { flushIntervalMs: statsFlushMs ? Number(statsFlushMs) : 100 },
  env: envJson ? JSON.parse(envJson) : {},
  ...(process.env.RATE_LIMITS ? { rateLimits: JSON.parse(process.env.RATE_LIMITS) } : {}),
})
process.stdout.write(`LISTENING ${host.url}\n`)

closeOnExit(host)
