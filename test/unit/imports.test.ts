import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** Every TypeScript file of the package's source: `src/**` and `adapters/*`. */
function sourceFiles(): string[] {
  const src = readdirSync(join(root, 'src'), { recursive: true, encoding: 'utf8' }).map((file) => join('src', file))
  const adapters = readdirSync(join(root, 'adapters')).map((file) => join('adapters', file))
  return [...src, ...adapters].filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts')).map((file) => file.split('\\').join('/')).sort()
}

// `import … from './x'`, `import type … from './x'`, `export … from './x'` (one line or several),
// `import './x'` and `import('./x')`. Type-only imports count: a cycle of types is a cycle too.
const staticImport = /^\s*(?:import|export)\s+(?:type\s+)?[\w\s{},*$]*?\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]/gm
const bareImport = /^\s*import\s*['"](\.{1,2}\/[^'"]+)['"]/gm
const dynamicImport = /\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g

/** The relative imports of one file, resolved to files of the tree. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8')
  const targets = new Set<string>()
  for (const pattern of [staticImport, bareImport, dynamicImport]) {
    for (const match of text.matchAll(pattern)) targets.add(resolve(file, match[1]!))
  }
  return [...targets].sort()
}

function resolve(from: string, specifier: string): string {
  const base = join(dirname(from), specifier).split('\\').join('/')
  for (const candidate of [base, `${base}.ts`, `${base}/index.ts`, base.replace(/\.m?js$/, '.ts')]) {
    if (candidate.endsWith('.ts') && existsSync(join(root, candidate))) return relative(root, join(root, candidate)).split('\\').join('/')
  }
  throw new Error(`${from}: cannot resolve import ${JSON.stringify(specifier)}`)
}

/** Every cycle found by a depth-first walk, each as the files in import order, the first repeated at the end. */
function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (file: string) => {
    state.set(file, 'open')
    stack.push(file)
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next])
      else if (!state.has(next)) visit(next)
    }
    stack.pop()
    state.set(file, 'done')
  }
  for (const file of graph.keys()) if (!state.has(file)) visit(file)
  return cycles
}

/**
 * The layers of docs/design/architecture.md, lowest first: a module imports modules of its own
 * layer or of layers below it, never above (type-only imports included).
 */
const layers = ['base', 'model', 'storage', 'log', 'stats', 'forward', 'metrics', 'http', 'core', 'governance', 'index', 'adapters', 'cli', 'client'] as const

/** The layer of a file: its folder under src/, `index` for src/index.ts, `adapters` for adapters/. */
function layerOf(file: string): string {
  if (file.startsWith('adapters/')) return 'adapters'
  const parts = file.split('/')
  return parts.length > 2 ? parts[1]! : 'index'
}

describe('module structure', () => {
  const files = sourceFiles()
  const graph = new Map(files.map((file) => [file, importsOf(file)]))

  it('reads the import graph of src/ and adapters/', () => {
    // The parser sees the imports it must see: an empty graph would have no cycle either.
    expect(files).toContain('src/index.ts')
    expect(graph.get('src/index.ts')).toEqual(expect.arrayContaining(['src/core/ingest.ts', 'src/model/model.ts', 'src/base/errors.ts']))
    expect(graph.get('adapters/express.ts')).toEqual(expect.arrayContaining(['src/index.ts', 'src/http/node-request.ts']))
  })

  it('has no import cycle, type-only imports included', () => {
    const cycles = findCycles(graph).map((cycle) => cycle.join(' -> '))
    expect(cycles, `import cycles:\n${cycles.join('\n')}`).toEqual([])
  })

  it('places every source folder in a layer', () => {
    const unplaced = [...new Set(files.map(layerOf))].filter((layer) => !(layers as readonly string[]).includes(layer))
    expect(unplaced, 'folders missing from the layer table (and from docs/design/architecture.md)').toEqual([])
  })

  it('keeps the client free of server code: from outside src/client, types only', () => {
    const text = (file: string) => readFileSync(join(root, file), 'utf8')
    const client = files.filter((file) => file.startsWith('src/client/'))
    expect(client).toContain('src/client/index.ts')
    const outside = client.flatMap((file) =>
      [...text(file).matchAll(/^\s*(import|export)\s+(type\s+)?[\w\s{},*$]*?\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]/gm)]
        .filter((match) => !resolve(file, match[3]!).startsWith('src/client/'))
        .map((match) => ({ typeOnly: Boolean(match[2]), edge: `${file} -> ${match[3]}` })),
    )
    // The model's types are read (the payload types follow from its definitions)...
    expect(outside.filter((i) => i.typeOnly).map((i) => i.edge)).toContain('src/client/types.ts -> ../model/definitions')
    // ...and nothing else.
    const runtime = outside.filter((i) => !i.typeOnly).map((i) => i.edge)
    expect(runtime, 'runtime imports of server code in the client').toEqual([])
  })

  it('imports only from its own layer or the layers below', () => {
    const rank = (file: string) => (layers as readonly string[]).indexOf(layerOf(file))
    const upward = [...graph].flatMap(([file, targets]) => targets.filter((target) => rank(target) > rank(file)).map((target) => `${file} (${layerOf(file)}) -> ${target} (${layerOf(target)})`))
    expect(upward, `imports of a higher layer:\n${upward.join('\n')}`).toEqual([])
  })
})
