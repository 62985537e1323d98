import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { pickExamples, renderCatalog } from '../governance/catalog'
import { checkCompatibility } from '../governance/compatibility'
import { exportModel } from '../governance/export'
import { checkFixtures, readFixtures } from '../governance/fixtures'
import { formatCompatibilityReport } from '../governance/report'
import { parseModelDescription } from '../governance/snapshot'
import type { ModelDescription } from '../model/schema'
import { CliError, loadModel } from './load-model'

/** Where the command writes and which folder paths are relative to. */
export interface CliIo {
  cwd: string
  stdout(text: string): void
  stderr(text: string): void
}

export const usage = `event-ingest: event model governance

Usage:
  event-ingest schema export [--model PATH] [--export NAME] [--out FILE]
      Write the model as GET /events/schema publishes it (sorted, diff-friendly) to FILE or stdout.
  event-ingest schema check --against FILE|URL [--model PATH] [--export NAME] [--json]
      Compare the model with a saved export (or a server's /events/schema) and list every change,
      one line each; exit 1 when any is breaking.
  event-ingest fixtures check DIR [--model PATH] [--export NAME]
      Validate every .json fixture under DIR (one event or an array each); exit 1 naming each failure.
  event-ingest docs [--model PATH] [--export NAME] [--fixtures DIR] [--out FILE]
      Write the event catalog as Markdown, with an example per event from the fixtures.

Options:
  --model PATH   a module exporting the model: createEventModel(...) as default or "model", a
                 createEventIngest(...) or event definitions. .ts/.mts/.cts files load through tsx
                 (npm install --save-dev tsx). Without it: the canonical model.
  --export NAME  the export to use when the module has several
  -h, --help     this help

Exit codes: 0 fine, 1 breaking changes or invalid fixtures, 2 usage or loading error.
`

const options = {
  model: { type: 'string' },
  export: { type: 'string' },
  out: { type: 'string' },
  against: { type: 'string' },
  fixtures: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

/** Runs the command with `argv` (without node and the script) and resolves with its exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    return await dispatch(argv, io)
  } catch (error) {
    if (error instanceof CliError || (error instanceof TypeError && error.message.startsWith('[event-ingest]'))) {
      io.stderr(`event-ingest: ${error.message.replace(/^\[event-ingest\] /, '')}\n`)
      return 2
    }
    io.stderr(`event-ingest: ${(error as Error)?.stack ?? String(error)}\n`)
    return 2
  }
}

async function dispatch(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true })
  } catch (error) {
    throw new CliError(`${(error as Error).message}\nRun event-ingest --help for usage.`)
  }
  const { values, positionals } = parsed
  const [command, sub, ...rest] = positionals
  if (values.help || command === undefined || command === 'help') {
    io.stdout(usage)
    return command === undefined && !values.help ? 2 : 0
  }
  const load = () => loadModel(values.model, values.export, io.cwd)
  const path = (file: string) => resolve(io.cwd, file)

  if (command === 'schema' && sub === 'export') {
    noMore(rest, 'schema export')
    const model = await load()
    const text = exportModel(model.description)
    if (values.out) {
      await write(path(values.out), text)
      io.stderr(`wrote ${values.out}: ${model.description.events.length} events from ${model.origin}\n`)
    } else {
      io.stdout(text)
    }
    return 0
  }

  if (command === 'schema' && sub === 'check') {
    noMore(rest, 'schema check')
    if (!values.against) throw new CliError('schema check needs --against FILE|URL (a saved export, or a server\'s /events/schema)')
    const saved = await readExport(values.against, io.cwd)
    const model = await load()
    const report = checkCompatibility(saved, model.description)
    if (values.json) io.stdout(`${JSON.stringify(report, null, 2)}\n`)
    else io.stdout(formatCompatibilityReport(report, values.against))
    return report.compatible ? 0 : 1
  }

  if (command === 'fixtures' && sub === 'check') {
    const [dir, ...extra] = rest
    if (!dir) throw new CliError('fixtures check needs a folder: event-ingest fixtures check DIR')
    noMore(extra, 'fixtures check DIR')
    const model = await load()
    const fixtures = await readFixtures(path(dir)).catch(rethrowMissing(dir))
    if (!fixtures.length) throw new CliError(`fixtures check: no .json fixture under ${dir}`)
    const failures = checkFixtures(model, fixtures)
    for (const failure of failures) {
      const at = `${failure.file}${failure.index !== undefined ? `[${failure.index}]` : ''}${failure.id ? ` (${failure.id})` : ''}`
      io.stdout(`FAIL ${at}: ${failure.errors.map((error) => error.message).join('; ')}\n`)
    }
    io.stdout(failures.length ? `${failures.length} of ${fixtures.length} fixtures invalid against ${model.origin}\n` : `${fixtures.length} fixtures valid against ${model.origin}\n`)
    return failures.length ? 1 : 0
  }

  if (command === 'docs') {
    noMore(sub === undefined ? [] : [sub, ...rest], 'docs')
    const model = await load()
    const examples = values.fixtures ? pickExamples(await readFixtures(path(values.fixtures)).catch(rethrowMissing(values.fixtures)), model) : undefined
    const text = renderCatalog(model.description, examples ? { examples } : {})
    if (values.out) {
      await write(path(values.out), text)
      io.stderr(`wrote ${values.out}: the catalog of ${model.description.events.length} events from ${model.origin}\n`)
    } else {
      io.stdout(text)
    }
    return 0
  }

  throw new CliError(`unknown command "${positionals.join(' ')}"; run event-ingest --help for usage`)
}

/** A saved export from a file, or a model description from a URL (a server's `/events/schema`). */
async function readExport(against: string, cwd: string): Promise<ModelDescription> {
  if (/^https?:\/\//i.test(against)) {
    let response: Response
    try {
      response = await fetch(against, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(15_000) })
    } catch (error) {
      throw new CliError(`--against ${against}: ${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message}`)
    }
    if (!response.ok) throw new CliError(`--against ${against} answered ${response.status} ${response.statusText}`)
    return parseModelDescription(await response.text(), against)
  }
  const text = await readFile(resolve(cwd, against), 'utf8').catch(rethrowMissing(against))
  return parseModelDescription(text, against)
}

function rethrowMissing(path: string) {
  return (error: NodeJS.ErrnoException): never => {
    if (error.code === 'ENOENT') throw new CliError(`${path}: no such file or folder`)
    throw error
  }
}

function noMore(extra: readonly string[], command: string): void {
  if (extra.length) throw new CliError(`${command}: unexpected argument "${extra[0]}"; run event-ingest --help for usage`)
}

async function write(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true })
  await writeFile(file, text)
}
