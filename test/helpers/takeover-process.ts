/**
 * Child process of test/takeover.processes.test.ts, run with tsx: one event-ingest instance on the
 * storage given (`fs:<dir>` or a Redis URL with a key prefix). Prints `READY`, waits for a line on
 * stdin naming the moment to start, so that every child starts at once, then ingests events `<prefix>-0` .. `<prefix>-<count-1>`
 * in batches of 10, all batches at once, each retried while it is answered 503 (as a client told
 * to retry would), and prints one JSON line: accepted and duplicates summed over the final answers,
 * and how many 503s each code got.
 *
 * Usage: node --import tsx test/helpers/takeover-process.ts <storage> <redisBase|-> <idPrefix> <count> <instanceId>
 */
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { createEventIngest, IngestError, type StorageOption } from '../../src/index'
import { makeEvent } from './fixtures'

const [spec, redisBase, idPrefix, count, instanceId] = process.argv.slice(2)
if (!spec || !redisBase || !idPrefix || !count || !instanceId) throw new Error('usage: takeover-process.ts <storage> <redisBase|-> <idPrefix> <count> <instanceId>')

const storage: StorageOption = redisBase === '-' ? spec : { driver: 'redis', url: spec, base: redisBase }
const ingest = createEventIngest({ env: {}, storage, instanceId, storageTimeoutMs: 1000, stats: { flushIntervalMs: 60_000 }, onError: () => {} })
await ingest.ready()
process.stdout.write('READY\n')
// The line names the moment to start (ms since epoch): every child starts then, whatever the pipe's latency.
const [line] = await once(process.stdin, 'data')
await sleep(Math.max(0, Number(String(line).trim()) - Date.now()))

const n = Number(count)
const size = 10
const batches = Array.from({ length: Math.ceil(n / size) }, (_, b) =>
  Array.from({ length: Math.min(size, n - b * size) }, (_, i) => makeEvent({ id: `${idPrefix}-${b * size + i}`, payload: { productId: `p${b * size + i}` } })))
const totals = { accepted: 0, duplicates: 0, unavailable: {} as Record<string, number> }
await Promise.all(batches.map(async (events) => {
  const deadline = Date.now() + 60_000
  for (;;) {
    try {
      const result = await ingest.ingest(events)
      totals.accepted += result.accepted
      totals.duplicates += result.duplicates
      return
    } catch (error) {
      if (!(error instanceof IngestError) || error.status !== 503 || Date.now() > deadline) throw error
      totals.unavailable[error.code] = (totals.unavailable[error.code] ?? 0) + 1
      await sleep(20 + Math.random() * 80)
    }
  }
}))
process.stdout.write(`${JSON.stringify(totals)}\n`)
await ingest.close()
process.exit(0)
