import { existsSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createEventModel } from '../model/model'
import type { ModelDescription } from '../model/schema'
import type { BatchResult, EventResult } from '../model/validate'

/** A host's model as the command uses it: its description and its validator. */
export interface LoadedModel {
  description: ModelDescription
  validateEvent(input: unknown): EventResult<unknown>
  validateBatch?(input: unknown): BatchResult<unknown>
  /** Where it came from, for messages: the file and export, or `the canonical model`. */
  origin: string
}

/** The export names tried, in order, when `--export` is not given. */
const conventionalExports = ['default', 'model', 'eventModel', 'events', 'ingest']

/**
 * Loads the model a module exports: an `EventModel` (`createEventModel(…)`), an `EventIngest`
 * (`createEventIngest(…)`, its `model`) or a map of event definitions (`defineEvents(…)`, made
 * into a model over the canonical events). TypeScript modules (`.ts`, `.mts`, `.cts`) are loaded
 * through tsx, an optional peer dependency, so a host needs no build step. Without a path, the
 * canonical model.
 */
export async function loadModel(path: string | undefined, exportName: string | undefined, cwd: string): Promise<LoadedModel> {
  if (path === undefined) {
    const model = createEventModel()
    return { description: model.describe(), validateEvent: model.validateEvent, validateBatch: model.validateBatch, origin: 'the canonical model' }
  }
  const file = isAbsolute(path) ? path : resolve(cwd, path)
  if (!existsSync(file)) throw new CliError(`--model ${path}: no such file (looked for ${file})`)
  const url = pathToFileURL(file).href
  let module: Record<string, unknown>
  try {
    module = /\.[mc]?ts$/.test(file) ? await importTypeScript(url, path) : await import(url)
  } catch (error) {
    if (error instanceof CliError) throw error
    throw new CliError(`--model ${path} failed to load: ${(error as Error)?.message ?? String(error)}`)
  }
  const names = exportName ? [exportName] : conventionalExports
  for (const name of names) {
    const value = name === 'default' ? unwrapDefault(module) : module[name]
    const model = asModel(value)
    if (model) return { ...model, origin: `${path} (export ${name})` }
  }
  if (exportName) throw new CliError(`--model ${path}: export "${exportName}" is ${exportName in module ? 'not an event model, an EventIngest or event definitions' : 'missing'}`)
  // One export that is a model, whatever its name.
  const found = Object.entries(module).flatMap(([name, value]) => {
    const model = asModel(value)
    return model ? [{ name, model }] : []
  })
  if (found.length === 1) return { ...found[0]!.model, origin: `${path} (export ${found[0]!.name})` }
  throw new CliError(
    found.length > 1
      ? `--model ${path} exports several models (${found.map((entry) => entry.name).join(', ')}): choose one with --export NAME`
      : `--model ${path} exports no event model: export the result of createEventModel(…) (default or as "model"), of createEventIngest(…), or event definitions`,
  )
}

async function importTypeScript(url: string, path: string): Promise<Record<string, unknown>> {
  let api: { tsImport(specifier: string, parent: string): Promise<Record<string, unknown>> }
  try {
    api = (await import('tsx/esm/api')) as typeof api
  } catch {
    throw new CliError(`--model ${path} is TypeScript, which the command loads through tsx: npm install --save-dev tsx (or point --model at built JavaScript)`)
  }
  return api.tsImport(url, import.meta.url)
}

/** tsx may hand a TypeScript module's exports over under `default` when it compiles them to CommonJS. */
function unwrapDefault(module: Record<string, unknown>): unknown {
  const value = module.default
  if (value && typeof value === 'object' && !asModel(value) && 'default' in value) return (value as Record<string, unknown>).default
  return value
}

function asModel(value: unknown): Omit<LoadedModel, 'origin'> | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const candidate = value as Record<string, unknown>
  if (typeof candidate.describe === 'function' && typeof candidate.validateEvent === 'function') {
    const model = candidate as unknown as { describe(): ModelDescription; validateEvent(input: unknown): EventResult<unknown>; validateBatch?(input: unknown): BatchResult<unknown> }
    const validateBatch = model.validateBatch
    return {
      description: model.describe(),
      validateEvent: (input) => model.validateEvent(input),
      ...(typeof validateBatch === 'function' ? { validateBatch: (input: unknown) => validateBatch.call(model, input) } : {}),
    }
  }
  if (typeof candidate.schema === 'function' && typeof candidate.model === 'object') return asModel(candidate.model)
  const entries = Object.values(candidate)
  if (entries.length && entries.every((entry) => typeof entry === 'object' && entry !== null && Array.isArray((entry as { sources?: unknown }).sources))) {
    const model = createEventModel({ events: candidate as never })
    return { description: model.describe(), validateEvent: model.validateEvent, validateBatch: model.validateBatch }
  }
  return undefined
}

/** A usage or loading problem: printed as one message, exit code 2. */
export class CliError extends Error {
  override name = 'CliError'
}
