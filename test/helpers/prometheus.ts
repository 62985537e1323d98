/** One scrape, parsed from the Prometheus text exposition format. */
export interface Scrape {
  /** `# TYPE` of each metric family. */
  types: Map<string, string>
  /** Every sample, keyed `name` or `name{a="x",b="y"}` (labels sorted by name). */
  samples: Map<string, number>
  /** A sample's value; throws naming it when the scrape has no such sample. */
  value(name: string, labels?: Record<string, string>): number
}

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

export function sampleKey(name: string, labels: Record<string, string> = {}): string {
  const names = Object.keys(labels).sort()
  return names.length === 0 ? name : `${name}{${names.map((label) => `${label}=${JSON.stringify(labels[label])}`).join(',')}}`
}

/** Parses a scrape; a line that is neither a comment nor a sample throws, naming it. */
export function parsePrometheus(text: string): Scrape {
  const types = new Map<string, string>()
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    if (line.startsWith('#')) {
      const type = /^# TYPE (\S+) (\S+)$/.exec(line)
      if (type) types.set(type[1]!, type[2]!)
      continue
    }
    const match = sampleLine.exec(line)
    if (!match) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`)
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? '').matchAll(labelPair)) labels[pair[1]!] = JSON.parse(`"${pair[2]!}"`)
    const raw = match[3]!
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw)
    if (Number.isNaN(value) && raw !== 'NaN') throw new Error(`not a sample value: ${JSON.stringify(line)}`)
    samples.set(sampleKey(match[1]!, labels), value)
  }
  return {
    types,
    samples,
    value(name, labels) {
      const key = sampleKey(name, labels)
      const found = samples.get(key)
      if (found === undefined) throw new Error(`the scrape has no sample ${key}; it has: ${[...samples.keys()].filter((k) => k.startsWith(name)).join(', ') || 'none of that name'}`)
      return found
    },
  }
}
