/**
 * Child process of the crash test in test/fs-driver.test.ts, run with tsx. For n = 0, 1, … it
 * creates `r:<run>:<n>` and overwrites `hot:<run>`, each value carrying its own sha256, and prints
 * `ACK <n>` only once both setItem calls resolved. It never stops by itself: the parent SIGKILLs it.
 * Keys are unique per run so that a file torn by one kill is not repaired by the next run.
 *
 * Usage: node --import tsx test/helpers/fs-crash-writer.ts <base> <run>
 */
import { createHash, randomBytes, randomInt } from 'node:crypto'
import { createStorage } from 'unstorage'
import { fsDriver } from '../../src/storage/fs-driver'

const [base, run] = process.argv.slice(2)
if (!base || !run) throw new Error('usage: fs-crash-writer.ts <base> <run>')

/** A value of up to 64 KiB: `sha256=<hex of body>\n<body>`, the body 1 byte or more. */
function makeRecord(): string {
  const length = randomInt(1, 64 * 1024 - 72)
  const body = randomBytes(Math.ceil((length * 3) / 4)).toString('base64').slice(0, length)
  return `sha256=${createHash('sha256').update(body).digest('hex')}\n${body}`
}

const storage = createStorage({ driver: fsDriver({ base }) })
process.stdout.write('READY\n')
for (let n = 0; ; n++) {
  await storage.setItem(`r:${run}:${n}`, makeRecord())
  await storage.setItem(`hot:${run}`, makeRecord())
  // stdout to a pipe is synchronous on Linux: once this returns, the parent will read the line.
  process.stdout.write(`ACK ${n}\n`)
}
