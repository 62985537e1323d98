import { readFileSync } from 'node:fs'
import { SourceMap, type SourceMapPayload } from 'node:module'
import { relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The parts of a V8 `.cpuprofile` (as written by `node --cpu-prof`) that are read here. */
interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

interface CallFrame {
  functionName: string
  url: string
  /** 0-based, in the code V8 ran (the package's build, possibly passed over by tsx). */
  lineNumber: number
  columnNumber: number
}

/** Who a function belongs to. */
export type Owner = 'ours' | 'bench' | 'dep' | 'node' | 'v8' | 'gc' | 'idle' | 'program'

/** One function of the profile. */
export interface ProfileFunction {
  name: string
  /** `src/ingest.ts:120` (original TypeScript line), `node_modules/zod/...:12`, `node:internal/...:3`, or `(native)`. */
  location: string
  owner: Owner
  /** The npm package, for `dep`. */
  pkg?: string
  /** For a V8 builtin or native (no script): the nearest caller with a script, to say who called it. */
  calledFrom?: string
  /** ms spent in this function itself. */
  selfMs: number
}

/** Time spent below one of our functions, counted at the innermost of ours on each sampled stack. */
export interface BlameEntry {
  name: string
  location: string
  /** ms of samples whose innermost frame of ours is this function (its own code plus the deps and builtins it calls). */
  ms: number
  /** That time split by the owner of the sampled leaf: `ours`, `dep:zod`, `v8`, `node`... */
  byLeaf: Record<string, number>
}

/** What a profile says, ready for the report. */
export interface ProfileSummary {
  /** Sampled wall time, ms (idle included). */
  totalMs: number
  /** Whether only the load window was counted (start-up and warm-up left out). */
  windowed: boolean
  /** Sampled time not idle, ms: the base of every percentage. */
  busyMs: number
  /** Busy time by owner (and by package for deps): `ours`, `dep:h3`, `node`, `v8`, `gc`, `program`, `bench`. */
  byOwner: Record<string, number>
  /** Functions by self time, busiest first. */
  top: ProfileFunction[]
  /** Our functions by the time below them (see {@link BlameEntry}), busiest first. */
  blame: BlameEntry[]
}

/**
 * Reads a `.cpuprofile` and attributes its samples. Positions in the package's build are mapped
 * back to .ts lines with the source maps the server dumped.
 */
export function summariseProfile(profilePath: string, root: string, options: { sourceMapsPath?: string; window?: { fromUs: number; toUs: number }; topN?: number } = {}): ProfileSummary {
  const { sourceMapsPath, window, topN = 25 } = options
  const profile = JSON.parse(readFileSync(profilePath, 'utf8')) as CpuProfile
  const maps = new Map<string, SourceMap>()
  if (sourceMapsPath) {
    try {
      const payloads = JSON.parse(readFileSync(sourceMapsPath, 'utf8')) as Record<string, SourceMapPayload>
      for (const [url, payload] of Object.entries(payloads)) maps.set(url, new SourceMap(payload))
    } catch {
      // Without maps, positions stay those of the compiled code (still the right file).
    }
  }

  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)

  const describe = new Map<number, { name: string; location: string; owner: Owner; pkg?: string }>()
  const frameOf = (id: number) => {
    let found = describe.get(id)
    if (!found) {
      found = describeFrame(byId.get(id)!.callFrame, root, maps)
      describe.set(id, found)
    }
    return found
  }

  // Each sample lasts until the next one; the last takes the average.
  const durations = profile.samples.map((_, i) => (profile.timeDeltas[i + 1] ?? 0) / 1000)
  const lastIndex = durations.length - 1
  if (lastIndex >= 0) durations[lastIndex] = (profile.endTime - profile.startTime) / 1000 / Math.max(1, durations.length)
  // Only the samples inside the window (the load, without start-up and warm-up), when it holds any.
  const inWindow = profile.samples.map(() => true)
  if (window) {
    let at = profile.startTime
    const flags = profile.samples.map((_, i) => {
      at += profile.timeDeltas[i] ?? 0
      return at >= window.fromUs && at <= window.toUs
    })
    if (flags.some(Boolean)) flags.forEach((flag, i) => (inWindow[i] = flag))
  }
  const windowed = inWindow.every(Boolean) ? undefined : inWindow

  const self = new Map<string, ProfileFunction>()
  const blame = new Map<string, BlameEntry>()
  const byOwner: Record<string, number> = {}
  let totalMs = 0
  let busyMs = 0

  for (let i = 0; i < profile.samples.length; i++) {
    if (windowed && !windowed[i]) continue
    const ms = durations[i]!
    const leafId = profile.samples[i]!
    const leaf = frameOf(leafId)
    totalMs += ms
    if (leaf.owner === 'idle') continue
    busyMs += ms
    const ownerKey = leaf.owner === 'dep' ? `dep:${leaf.pkg}` : leaf.owner
    byOwner[ownerKey] = (byOwner[ownerKey] ?? 0) + ms

    // A builtin has no script: name its caller so "parse (native)" says whose JSON.parse it was.
    let calledFrom: string | undefined
    if (leaf.owner === 'v8') {
      for (let up = parent.get(leafId); up !== undefined; up = parent.get(up)) {
        const frame = frameOf(up)
        if (frame.owner !== 'v8' && frame.name !== '(root)') {
          calledFrom = `${frame.name} ${frame.location}`
          break
        }
      }
    }
    const selfKey = `${leaf.name}|${leaf.location}|${calledFrom ?? ''}`
    let entry = self.get(selfKey)
    if (!entry) self.set(selfKey, (entry = { ...leaf, calledFrom, selfMs: 0 }))
    entry.selfMs += ms

    // The innermost frame of ours on the stack takes the sample.
    for (let id: number | undefined = leafId; id !== undefined; id = parent.get(id)) {
      const frame = frameOf(id)
      if (frame.owner !== 'ours') continue
      const key = `${frame.name}|${frame.location}`
      let owned = blame.get(key)
      if (!owned) blame.set(key, (owned = { name: frame.name, location: frame.location, ms: 0, byLeaf: {} }))
      owned.ms += ms
      owned.byLeaf[ownerKey] = (owned.byLeaf[ownerKey] ?? 0) + ms
      break
    }
  }

  return {
    totalMs,
    windowed: windowed !== undefined,
    busyMs,
    byOwner,
    top: [...self.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, topN),
    blame: [...blame.values()].sort((a, b) => b.ms - a.ms).slice(0, topN),
  }
}

/**
 * The source file (URL) and position (0-based) a position of generated code comes from, when its
 * map says. Profile positions are function starts: attribution stays at function level.
 */
function original(map: SourceMap | undefined, line: number, column: number): { url: string; line: number; column: number } | undefined {
  if (!map) return undefined
  // A function's start can fall on a segment with no source (a bundler's own text): the first
  // mapped position after it on the line tells where the function came from.
  for (let at = column; at < column + 200; at++) {
    const entry = map.findEntry(line, at) as { generatedLine?: number; originalLine?: number; originalColumn?: number; originalSource?: string }
    if (entry.generatedLine !== undefined && entry.generatedLine !== line) break
    if (typeof entry.originalLine === 'number' && entry.originalSource) return { url: entry.originalSource, line: entry.originalLine, column: entry.originalColumn ?? 0 }
  }
  return undefined
}

/**
 * Where a position of the code V8 ran comes from: through the loader's map (tsx's, for TypeScript
 * and for a built file it passed over), then, for a built file, through the build's own map (kept
 * as `<url>.map`) to the TypeScript source.
 */
function originalPosition(maps: Map<string, SourceMap>, url: string, line: number, column: number): { url: string; line: number } {
  let at = original(maps.get(url), line, column) ?? { url, line, column }
  if (at.url.endsWith('.mjs')) at = original(maps.get(`${at.url}.map`), at.line, at.column) ?? at
  return { url: at.url, line: at.line + 1 }
}

function relativePath(url: string, root: string): string {
  if (!url.startsWith('file:')) return url
  try {
    return relative(root, fileURLToPath(url)).split(sep).join('/')
  } catch {
    return url
  }
}

function describeFrame(frame: CallFrame, root: string, maps: Map<string, SourceMap>): { name: string; location: string; owner: Owner; pkg?: string } {
  const name = frame.functionName || '(anonymous)'
  const { url } = frame
  if (!url) {
    if (name === '(garbage collector)') return { name, location: '', owner: 'gc' }
    if (name === '(idle)') return { name, location: '', owner: 'idle' }
    if (name === '(program)') return { name, location: '', owner: 'program' }
    return { name, location: '(native)', owner: 'v8' }
  }
  if (url.startsWith('node:')) return { name, location: `${url}:${frame.lineNumber + 1}`, owner: 'node' }
  const mapped = originalPosition(maps, url, frame.lineNumber, frame.columnNumber)
  const path = relativePath(mapped.url, root)
  const location = `${path}:${mapped.line}`
  const modules = path.lastIndexOf('node_modules/')
  if (modules >= 0) {
    const rest = path.slice(modules + 'node_modules/'.length).split('/')
    const pkg = rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
    return { name, location, owner: 'dep', pkg }
  }
  if (path.startsWith('src/') || path.startsWith('adapters/')) return { name, location, owner: 'ours' }
  if (path.startsWith('bench/')) return { name, location, owner: 'bench' }
  return { name, location, owner: 'dep', pkg: path.startsWith('..') ? 'other' : path.split('/')[0] }
}
