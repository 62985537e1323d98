/**
 * Child process of test/forwarding.leases.test.ts, run with tsx: one forwarding event-ingest
 * instance. Prints `READY`, waits for a line on stdin naming the moment to start (ms since epoch),
 * so that every child's forwarder starts at once, then creates the core on the storage given, with
 * the sink given: it adopts the outbox of instances gone from the registry and delivers it. A
 * second line (or the end of stdin) closes the core gracefully (the attempt in flight finishes),
 * prints `CLOSED` and exits.
 *
 * Usage: node --import tsx test/helpers/lease-race-process.ts '<json: { storage, instanceId, sink }>'
 */
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { createEventIngest, type EventIngest, type EventIngestOptions } from '../../src/index'

const [config] = process.argv.slice(2)
if (!config) throw new Error("usage: lease-race-process.ts '<json: { storage, instanceId, sink }>'")
const { storage, instanceId, sink } = JSON.parse(config) as Pick<EventIngestOptions, 'storage' | 'instanceId' | 'sink'>

let ingest: EventIngest<any> | undefined
let closing = false
async function close() {
  if (closing) return
  closing = true
  const force = setTimeout(() => process.exit(1), 10_000)
  force.unref()
  await ingest?.close().catch((error: unknown) => process.stderr.write(`close failed: ${String(error)}\n`))
  process.stdout.write('CLOSED\n')
  process.exit(0)
}

const lines = createInterface({ input: process.stdin })
let started = false
lines.on('line', (line) => {
  if (started) return void close()
  started = true
  void (async () => {
    await sleep(Math.max(0, Number(line.trim()) - Date.now()))
    ingest = createEventIngest({ env: {}, storage, instanceId, sink, onError: () => {} })
    await ingest.ready()
    process.stdout.write('STARTED\n')
  })()
})
lines.on('close', () => void close())
process.stdout.write('READY\n')
