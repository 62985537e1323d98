/**
 * Child process of test/system/fs-owners.processes.test.ts, run with tsx: the real product,
 * `createEventIngest` on event-ingest's fs driver in `<dir>`, mounted with the h3 adapter on a
 * loopback port; prints `READY <url>` once it accepts requests. With `stall`, every batch record
 * write hangs for ever (a process stuck on its disk): its claims stay, with no record behind them.
 *
 * Usage: node --import tsx test/helpers/fs-owner-process.ts <dir> <instanceId> <storageTimeoutMs> [stall]
 */
import { createServer } from 'node:http'
import { H3, toNodeHandler } from 'h3'
import { createStorage } from 'unstorage'
import { createEventIngest } from '../../src/index'
import { fsDriver } from '../../src/storage/fs-driver'
import { eventIngestPlugin } from '../../adapters/h3'
import { listen } from './servers'

const [dir, instanceId, timeout, mode] = process.argv.slice(2)
if (!dir || !instanceId || !timeout) throw new Error('usage: fs-owner-process.ts <dir> <instanceId> <storageTimeoutMs> [stall]')

const driver = fsDriver({ base: dir })
if (mode === 'stall') {
  const isRecord = (key: string) => /(^|:)b:\d{10}:/.test(key)
  const { setItem, setItemRaw } = driver
  driver.setItem = (key, ...rest) => (isRecord(key) ? new Promise(() => {}) : setItem!.call(driver, key, ...rest))
  driver.setItemRaw = (key, ...rest) => (isRecord(key) ? new Promise(() => {}) : setItemRaw!.call(driver, key, ...rest))
}
const ingest = createEventIngest({ env: {}, storage: createStorage({ driver }), instanceId, storageTimeoutMs: Number(timeout) })
await ingest.ready()
const app = new H3()
app.register(eventIngestPlugin(ingest))
const url = await listen(createServer(toNodeHandler(app)))
// stdout to a pipe is synchronous on Linux: once this returns, the parent will read the line.
process.stdout.write(`READY ${url}\n`)
