/**
 * Child process of the cross-process setIfAbsent tests in test/fs-driver.test.ts, run with tsx.
 * Prints `READY`, waits for a line on stdin so that all children start together, then claims
 * `claim:0` .. `claim:<count - 1>` at once with value `<id>` and prints the results, in key order,
 * as one JSON line. With `all`, keys are claimed 50 at a time with setIfAbsentAll, starting at
 * key `<offset>` and wrapping around, so that each child's batches overlap the others' in part.
 * With `replace`, the keys (already holding `<expected>`) are replaced 50 at a time with replaceAll,
 * from `<offset>` on as well; a key it set prints as null, one it did not as the value found after.
 *
 * Usage: node --import tsx test/helpers/fs-claimer.ts <base> <id> <count> [all|replace <offset> [<expected>]]
 */
import { once } from 'node:events'
import { fsDriver, type FsDriverInstance } from '../../src/storage/fs-driver'

const [base, id, count, mode, offset] = process.argv.slice(2)
if (!base || !id || !count) throw new Error('usage: fs-claimer.ts <base> <id> <count>')

const claims: FsDriverInstance = fsDriver({ base }).getInstance!()
process.stdout.write('READY\n')
await once(process.stdin, 'data')
const n = Number(count)
let results: (string | null)[]
if (mode === 'replace') {
  const order = Array.from({ length: n }, (_, k) => (k + Number(offset)) % n)
  const batches = Array.from({ length: Math.ceil(n / 50) }, (_, b) => order.slice(b * 50, b * 50 + 50))
  const expected = process.argv[7]!
  const answers = await Promise.all(batches.map((batch) => claims.replaceAll(batch.map((k) => `claim:${k}`), batch.map(() => expected), id)))
  results = new Array(n)
  batches.forEach((batch, b) => batch.forEach((k, i) => (results[k] = answers[b]![i]! ? null : 'lost')))
} else if (mode === 'all') {
  const order = Array.from({ length: n }, (_, k) => (k + Number(offset)) % n)
  const batches = Array.from({ length: Math.ceil(n / 50) }, (_, b) => order.slice(b * 50, b * 50 + 50))
  const answers = await Promise.all(batches.map((batch) => claims.setIfAbsentAll(batch.map((k) => `claim:${k}`), id)))
  results = new Array(n)
  batches.forEach((batch, b) => batch.forEach((k, i) => (results[k] = answers[b]![i]!)))
} else {
  results = await Promise.all(Array.from({ length: n }, (_, k) => claims.setIfAbsent(`claim:${k}`, id)))
}
process.stdout.write(`${JSON.stringify(results)}\n`)
process.exit(0)
