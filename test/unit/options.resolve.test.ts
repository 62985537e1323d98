import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { DEFAULT_MEMORY_MAX_BYTES, DEFAULT_MEMORY_MAX_EVENTS, createEventIngest, createEventModel, resolveOptions } from 'event-ingest'

const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8')
const sink = 'http://127.0.0.1:9/sink'
const fixedId = () => 'host_1_abc'

/** The rows of the README table whose header row starts with `| <first> |`, as cells keyed by the first cell's names. */
function table(first: string, from = 0): Map<string, string[]> {
  const start = readme.indexOf(`\n| ${first} |`, from)
  expect(start, `a README table starting with "${first}"`).toBeGreaterThan(-1)
  const rows = new Map<string, string[]>()
  for (const line of readme.slice(start + 1).split('\n').slice(2)) {
    if (!line.startsWith('|')) break
    // `\|` inside a cell is a literal bar, not a column.
    const cells = line.replace(/\\\|/g, '\u0000').split('|').slice(1, -1).map((cell) => cell.replaceAll('\u0000', '|').trim())
    // `minBackoffMs` / `maxBackoffMs` | `500` / `60_000`: one row, two fields.
    const names = [...cells[0]!.matchAll(/`(\w+)`/g)].map((m) => m[1]!)
    names.forEach((name, i) => rows.set(name, cells.slice(1).map((cell) => (names.length > 1 ? cell.split(' / ')[i] ?? cell : cell))))
  }
  return rows
}

/** A default as the README writes it: `86_400_000`, `'reject'`, `false`, 1 MiB, 32 KiB, `memory:`. */
function value(cell: string): unknown {
  const units = cell.match(/^(\d+) (MiB|KiB)/)
  if (units) return Number(units[1]) * (units[2] === 'MiB' ? 1_048_576 : 1024)
  const code = cell.match(/^[\d_]+/)?.[0] ?? cell.match(/^`([^`]+)`/)?.[1]
  expect(code, `a value in ${JSON.stringify(cell)}`).toBeDefined()
  if (/^[\d_]+$/.test(code!)) return Number(code!.replaceAll('_', ''))
  if (code === 'false' || code === 'true') return code === 'true'
  return code!.replace(/^'(.*)'$/, '$1')
}

/** The numeric fields of an object written in a README cell: `{ maxBytes: 1_048_576, maxMs: 2000 }`. */
function fields(cell: string): Record<string, number> {
  return Object.fromEntries([...cell.matchAll(/(\w+)\??: ([\d_]+)/g)].map((m) => [m[1]!, Number(m[2]!.replaceAll('_', ''))]))
}

describe('resolveOptions', () => {
  it('reads storage, tokens and the sink from the environment when the options leave them unset', () => {
    const resolved = resolveOptions({}, {
      EVENT_STORAGE: 'fs:./data/events',
      EVENT_INGEST_TOKEN: 'a, b',
      EVENT_ADMIN_TOKEN: 'admin',
      EVENT_SINK_URL: sink,
      EVENT_SINK_TOKEN: 'sink-secret',
    }, fixedId)
    expect(resolved.storage).toBe('fs:./data/events')
    expect(resolved.tokens).toEqual(['a', 'b'])
    expect(resolved.adminTokens).toEqual(['admin'])
    expect(resolved.sink).toMatchObject({ url: sink, token: 'sink-secret', timeoutMs: 10_000, leaseMs: 35_000, wait: false })
  })

  it('reads options.env before the environment it is given, and never process.env', () => {
    process.env.EVENT_INGEST_TOKEN = 'from-process'
    try {
      expect(resolveOptions({}, {}, fixedId).tokens).toEqual([])
      expect(resolveOptions({ env: { EVENT_ADMIN_TOKEN: 'own' } }, { EVENT_ADMIN_TOKEN: 'given' }, fixedId).adminTokens).toEqual(['own'])
    } finally {
      delete process.env.EVENT_INGEST_TOKEN
    }
  })

  it('lets explicit options win over the environment', () => {
    const env = { EVENT_STORAGE: 'fs:./data/events', EVENT_INGEST_TOKEN: 'env', EVENT_ADMIN_TOKEN: 'env', EVENT_SINK_URL: sink, EVENT_SINK_TOKEN: 'env' }
    const resolved = resolveOptions({ storage: 'memory:', token: 'own', adminToken: ['x', 'y'], sink: false }, env, fixedId)
    expect(resolved.storage).toBe('memory:')
    expect(resolved.tokens).toEqual(['own'])
    expect(resolved.adminTokens).toEqual(['x', 'y'])
    expect(resolved.sink).toBeUndefined()
    expect(resolveOptions({ sink: { url: 'http://127.0.0.1:9/own', token: 'own' } }, env, fixedId).sink).toMatchObject({ url: 'http://127.0.0.1:9/own', token: 'own' })
    // A sink given without a token still takes EVENT_SINK_TOKEN.
    expect(resolveOptions({ sink: 'http://127.0.0.1:9/own' }, env, fixedId).sink).toMatchObject({ url: 'http://127.0.0.1:9/own', token: 'env' })
  })

  it('fills in every default, and makes an instanceId only when none is given', () => {
    let made = 0
    const makeId = () => `made_${++made}`
    const resolved = resolveOptions({}, {}, makeId)
    expect(resolved).toMatchObject({
      storage: 'memory:',
      tokens: [],
      adminTokens: [],
      authorize: undefined,
      retentionMs: undefined,
      sink: undefined,
      cors: undefined,
      instanceId: 'made_1',
      env: {},
    })
    expect(resolved.onError).toBeTypeOf('function')
    expect(resolveOptions({ instanceId: 'mine', cors: { origin: '*' } }, {}, makeId)).toMatchObject({ instanceId: 'mine', cors: { origin: '*', maxAge: 600 } })
    expect(made).toBe(1)
    // The default id: host, pid and random bytes, a valid key segment, different per call.
    const [first, second] = [resolveOptions({}).instanceId, resolveOptions({}).instanceId]
    expect(first).toMatch(new RegExp(`^[A-Za-z0-9_.]{1,40}_${process.pid}_[0-9a-f]{6}$`))
    expect(first).not.toBe(second)
  })

  it('resolves to the defaults the README documents', async () => {
    const resolved = resolveOptions({}, {}, fixedId)
    const options = table('option')
    const documented = (name: string) => options.get(name)![1]!
    for (const name of ['storage', 'dedupeWindowMs', 'pruneIntervalMs', 'storageTimeoutMs', 'retryAfterSeconds'] as const) {
      expect(resolved[name], name).toBe(value(documented(name)))
    }
    expect(resolved.refusalDrain).toEqual(fields(documented('refusalDrain')))
    expect(resolved.stats).toEqual(fields(options.get('stats')![2]!))
    expect(resolveOptions({ cors: { origin: '*' } }, {}, fixedId).cors!.maxAge).toBe(fields(options.get('cors')![2]!).maxAge)
    const ingest = createEventIngest({ env: {}, cors: { origin: '*' } })
    try {
      const preflight = await ingest.handle({ method: 'OPTIONS', path: '/events/ingest', headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST' } })
      expect(preflight?.headers['access-control-max-age']).toBe(String(fields(options.get('cors')![2]!).maxAge))
    } finally {
      await ingest.close()
    }
    expect(resolved.model.sourcePolicy).toBe(value(documented('sourcePolicy')))

    const stats = table('`stats` field')
    expect(resolved.stats.futureToleranceMs).toBe(value(stats.get('futureToleranceMs')![0]!))
    expect(resolved.stats.pastToleranceMs).toBe(value(stats.get('pastToleranceMs')![0]!))

    // The Forwarding section's tables (every sink, then one per sink type), as one.
    const sinkFields = new Map<string, string[]>()
    for (let at = readme.indexOf('\n| `sink` field |'); at >= 0; at = readme.indexOf('\n| `sink` field |', at + 1)) {
      for (const [name, cells] of table('`sink` field', at)) if (!sinkFields.has(name)) sinkFields.set(name, cells)
    }
    const resolvedSink = resolveOptions({ sink }, {}, fixedId).sink!
    const streamSink = resolveOptions({ sink: { url: 'redis://127.0.0.1:6379#events' } }, {}, fixedId).sink!
    for (const name of ['maxLen', 'maxAgeMs', 'idempotencyWindowMs'] as const) {
      expect(streamSink[name], `sink.${name}`).toBe(value(sinkFields.get(name)![0]!))
    }
    expect(streamSink).toMatchObject({ type: 'redis-stream', url: 'redis://127.0.0.1:6379', stream: 'events' })
    expect(resolvedSink.type).toBe('http')
    expect(resolveOptions({ sink: { type: 'nats', subject: 'a.b' } }, { NATS_URL: 'nats://10.0.0.1:4222' }, fixedId).sink!.url).toBe('nats://10.0.0.1:4222')
    expect(resolveOptions({ sink: { type: 'nats', subject: 'a.b' } }, {}, fixedId).sink!.url).toBe('nats://127.0.0.1:4222')
    for (const name of ['tokenHeader', 'timeoutMs', 'minBackoffMs', 'maxBackoffMs', 'maxRetryAfterMs', 'maxBatchEvents', 'maxBatchBytes', 'heartbeatMs', 'wait', 'waitTimeoutMs'] as const) {
      expect(resolvedSink[name], `sink.${name}`).toBe(value(sinkFields.get(name)![0]!))
    }
    expect(sinkFields.get('leaseMs')![0]).toBe('`3 × timeoutMs + 5000`')
    expect(resolvedSink.leaseMs).toBe(3 * resolvedSink.timeoutMs + 5000)

    const limits = table('limit')
    for (const [name, cells] of limits) expect(resolved.model.limits[name as keyof typeof resolved.model.limits], name).toBe(value(cells[0]!))
    expect(limits.size).toBe(Object.keys(resolved.model.limits).length)

    // The memory storage's bounds, in the Storage table.
    expect(fields(readme.match(/\{ driver: 'memory', maxEvents: [^}]*\}/)![0])).toEqual({ maxEvents: DEFAULT_MEMORY_MAX_EVENTS, maxBytes: DEFAULT_MEMORY_MAX_BYTES })
  })

  it('returns a frozen object, its nested settings frozen too, and never writes into the options given', () => {
    const given = Object.freeze({ refusalDrain: Object.freeze({ maxMs: 500 }), stats: Object.freeze({ windowMinutes: 5 }), sink: Object.freeze({ url: sink, headers: Object.freeze({ 'x-team': 'a' }) }) })
    const resolved = resolveOptions(given, { EVENT_SINK_TOKEN: 'secret' }, fixedId)
    for (const part of [resolved, resolved.refusalDrain, resolved.stats, resolved.sink, resolved.sink!.headers, resolved.tokens, resolved.adminTokens]) {
      expect(Object.isFrozen(part)).toBe(true)
    }
    expect(() => {
      ;(resolved as { dedupeWindowMs: number }).dedupeWindowMs = 1
    }).toThrow(TypeError)
    expect(resolved.refusalDrain).toEqual({ maxBytes: 1_048_576, maxMs: 500 })
    expect(resolved.stats.windowMinutes).toBe(5)
    expect(resolved.sink).toMatchObject({ headers: { 'x-team': 'a' }, token: 'secret' })
    expect(given.sink).toEqual({ url: sink, headers: { 'x-team': 'a' } })
  })

  it('runs the checks of createEventIngest, naming the option or the variable', () => {
    expect(() => resolveOptions({ tokn: 'x' } as never, {}, fixedId)).toThrow(/^\[event-ingest\] tokn is not an option \(did you mean token\?\)/)
    expect(() => resolveOptions({}, { EVENT_SINK_URL: 'localhost:3000/sink' }, fixedId)).toThrow(/^\[event-ingest\] EVENT_SINK_URL: sink url must be an http\(s\) URL/)
    expect(() => resolveOptions({ retentionMs: 1000 }, {}, fixedId)).toThrow(RangeError)
    const model = createEventModel()
    expect(resolveOptions({ model }, {}, fixedId).model).toBe(model)
  })
})
