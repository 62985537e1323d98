/**
 * Child process of test/system/dedupe.model.test.ts, run with tsx: one event-ingest instance behind
 * a real h3 HTTP server on a free loopback port, on the storage given (`fs:<dir>`, or a Redis URL
 * with a key prefix). Prints `LISTENING <url>` once it serves. Stats flush every 100 ms, so the
 * counts of an instance killed with SIGKILL are at most that old, and others see them quickly.
 *
 * The test kills it with SIGKILL at random moments. Otherwise it exits (after closing the core,
 * which flushes its stats) on SIGTERM, or when its stdin closes, so it never outlives a test run
 * that dies without killing it.
 *
 * Usage: node --import tsx test/helpers/model-ingest-process.ts <storage> <redisBase|-> <instanceId> <adminToken> <storageTimeoutMs>
 */
import type { StorageOption } from '../../src/index'
import { h3Host, startHost } from './servers'
import { closeOnExit } from './process'

const [spec, redisBase, instanceId, adminToken, timeout] = process.argv.slice(2)
if (!spec || !redisBase || !instanceId || !adminToken || !timeout) {
  throw new Error('usage: model-ingest-process.ts <storage> <redisBase|-> <instanceId> <adminToken> <storageTimeoutMs>')
}

const storage: StorageOption = redisBase === '-' ? spec : { driver: 'redis', url: spec, base: redisBase }
const host = await startHost(h3Host, {
  storage,
  instanceId,
  adminToken,
  storageTimeoutMs: Number(timeout),
  stats: { flushIntervalMs: 100 },
  onError: (error) => process.stderr.write(`onError: ${String(error)}\n`),
})
process.stdout.write(`LISTENING ${host.url}\n`)

closeOnExit(host)
