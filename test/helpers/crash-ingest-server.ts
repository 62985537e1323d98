/**
 * Child process of the crash test in test/crash.fs.test.ts, run with tsx. It runs the real product,
 * `createEventIngest` on the fs storage mounted with the h3 adapter on a loopback port, and prints
 * `READY <url>` once it accepts requests. It never stops by itself: the parent SIGKILLs it while
 * ingest requests are in flight.
 *
 * Usage: node --import tsx test/helpers/crash-ingest-server.ts <dir> <instanceId>
 */
import { createServer } from 'node:http'
import { H3, toNodeHandler } from 'h3'
import { createEventIngest } from '../../src/index'
import { eventIngestPlugin } from '../../adapters/h3'
import { listen } from './servers'

const [dir, instanceId] = process.argv.slice(2)
if (!dir || !instanceId) throw new Error('usage: crash-ingest-server.ts <dir> <instanceId>')

const ingest = createEventIngest({ env: {}, storage: `fs:${dir}`, instanceId })
await ingest.ready()
const app = new H3()
app.register(eventIngestPlugin(ingest))
const url = await listen(createServer(toNodeHandler(app)))
// stdout to a pipe is synchronous on Linux: once this returns, the parent will read the line.
process.stdout.write(`READY ${url}\n`)
