/**
 * Child process of the cross-process setIfAbsent test in test/fs-driver.test.ts, run with tsx.
 * Prints `READY`, waits for a line on stdin so that all children start together, then claims
 * `claim:0` .. `claim:<count - 1>` at once with value `<id>` and prints the results as one JSON line.
 *
 * Usage: node --import tsx test/helpers/fs-claimer.ts <base> <id> <count>
 */
import { once } from 'node:events'
import { fsDriver, type FsDriverInstance } from '../../src/drivers/fs'

const [base, id, count] = process.argv.slice(2)
if (!base || !id || !count) throw new Error('usage: fs-claimer.ts <base> <id> <count>')

const claims: FsDriverInstance = fsDriver({ base }).getInstance!()
process.stdout.write('READY\n')
await once(process.stdin, 'data')
const results = await Promise.all(
  Array.from({ length: Number(count) }, (_, k) => claims.setIfAbsent(`claim:${k}`, id)),
)
process.stdout.write(`${JSON.stringify(results)}\n`)
process.exit(0)
