/**
 * Child process of test/forwarding.processes.test.ts, run with tsx: the real product,
 * `createEventIngest` with a sink (forwarding through the durable outbox) on the given storage,
 * behind an h3 server on a loopback port. Prints `READY <url>` once it serves.
 *
 * stdin takes one command per line:
 * - `STATE`: prints `STATE <json>`, the core's `stats().forwarding`;
 * - `CLOSE`: closes the core gracefully (what a SIGTERM handler does), prints `CLOSED`, and exits.
 * It also closes and exits when its stdin ends, so it never outlives a test run that dies without
 * killing it. The tests mostly SIGKILL it.
 *
 * Usage: node --import tsx test/helpers/forward-ingest-process.ts '<json: { storage, instanceId, sink }>'
 */
import { createServer } from 'node:http'
import { createInterface } from 'node:readline'
import { H3, toNodeHandler } from 'h3'
import { createEventIngest, type EventIngestOptions } from '../../src/index'
import { eventIngestPlugin } from '../../adapters/h3'
import { closeServer, listen } from './servers'

const [config] = process.argv.slice(2)
if (!config) throw new Error("usage: forward-ingest-process.ts '<json: { storage, instanceId, sink }>'")
const { storage, instanceId, sink } = JSON.parse(config) as Pick<EventIngestOptions, 'storage' | 'instanceId' | 'sink'>

const ingest = createEventIngest({ env: {}, storage, instanceId, sink })
await ingest.ready()
const app = new H3()
app.register(eventIngestPlugin(ingest))
const server = createServer(toNodeHandler(app))
const url = await listen(server)
process.stdout.write(`READY ${url}\n`)

let closing = false
async function close() {
  if (closing) return
  closing = true
  const force = setTimeout(() => process.exit(1), 10_000)
  force.unref()
  await closeServer(server)
  await ingest.close().catch((error: unknown) => process.stderr.write(`close failed: ${String(error)}\n`))
  process.stdout.write('CLOSED\n')
  process.exit(0)
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  const command = line.trim()
  if (command === 'STATE') {
    void ingest.stats().then(
      (stats) => process.stdout.write(`STATE ${JSON.stringify(stats.forwarding)}\n`),
      (error: unknown) => process.stdout.write(`STATE ${JSON.stringify({ error: String(error) })}\n`),
    )
  } else if (command === 'CLOSE') {
    void close()
  }
})
lines.on('close', () => void close())
