import { execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import express from 'express'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest } from 'event-ingest'
import { eventIngest } from 'event-ingest/express'
import { projectRoot } from '../helpers/process'

/**
 * The `event-ingest` command as a host runs it: the built bin (`.ci/run` builds before testing;
 * a stale build is rebuilt here), in a sample host project made in a temp folder with its model in
 * TypeScript (no build step of its own) and a folder of golden fixtures.
 */
const run = promisify(execFile)
const cli = join(projectRoot, 'dist/cli.mjs')

let host: string
let server: Server | undefined

/** Runs `event-ingest ARGS` through the host's node_modules/.bin, as `npx event-ingest` would. */
function eventIngestCommand(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(host, 'node_modules/.bin/event-ingest'), args, { cwd: host, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** The host's model, in TypeScript: RefundIssued with a payload schema, over the canonical events. */
function modelSource(refund: string, extra = ''): string {
  return `import { z } from 'zod'
import { createEventModel, defineEvents, type EventDefinition } from 'event-ingest'

const currency: z.ZodType<'EUR' | 'USD'> = z.enum(['EUR', 'USD'])
const refund: EventDefinition = {
  sources: ['api', 'admin'],
  description: 'A refund was issued for an order.',
  payload: z.object({ ${refund} }),
}

export const model = createEventModel({ events: defineEvents({ RefundIssued: refund${extra} }) })
`
}

const original = "orderId: z.string().regex(/^ord_/).describe('The refunded order'), amount: z.number().positive().max(10000), currency, reason: z.string().max(200).optional()"

async function newestSource(dir: string): Promise<number> {
  const { readdir } = await import('node:fs/promises')
  let newest = 0
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) newest = Math.max(newest, (await stat(join(entry.parentPath, entry.name))).mtimeMs)
  }
  return newest
}

beforeAll(async () => {
  const built = await stat(cli).then((file) => file.mtimeMs, () => 0)
  if (built < (await newestSource(join(projectRoot, 'src')))) await run('npm', ['run', 'build'], { cwd: projectRoot, maxBuffer: 16 * 1024 * 1024 })

  host = await mkdtemp(join(tmpdir(), 'ei-cli-host-'))
  await writeFile(join(host, 'package.json'), JSON.stringify({ name: 'cli-host', private: true, type: 'module' }))
  // The host's dependencies: event-ingest as installed (its package.json `bin` and `exports`), zod and tsx.
  await mkdir(join(host, 'node_modules/.bin'), { recursive: true })
  await symlink(projectRoot, join(host, 'node_modules/event-ingest'), 'dir')
  for (const dependency of ['zod', 'tsx']) await symlink(join(projectRoot, 'node_modules', dependency), join(host, 'node_modules', dependency), 'dir')
  const bin = JSON.parse(await readFile(join(projectRoot, 'package.json'), 'utf8')).bin['event-ingest'] as string
  await symlink(join('..', 'event-ingest', bin), join(host, 'node_modules/.bin/event-ingest'))

  await mkdir(join(host, 'src'))
  await writeFile(join(host, 'src/events.ts'), modelSource(original))
  await mkdir(join(host, 'fixtures'))
  await writeFile(join(host, 'fixtures/RefundIssued.json'), JSON.stringify({
    id: 'evt_refund_1', name: 'RefundIssued', schemaVersion: 1, occurredAt: '2026-11-02T14:03:11Z', source: 'api',
    payload: { orderId: 'ord_9001', amount: 29.95, currency: 'EUR' },
  }, null, 2))
  await writeFile(join(host, 'fixtures/OrderCreated.json'), await readFile(join(projectRoot, 'test/fixtures/v1/OrderCreated.json')))
}, 300_000)

afterAll(async () => {
  server?.close()
  if (host) await rm(host, { recursive: true, force: true })
})

describe('the event-ingest command on a host project', () => {
  it('prints its usage with --help and exits 0', async () => {
    const { code, stdout } = await eventIngestCommand(['--help'])
    expect(code).toBe(0)
    for (const command of ['schema export', 'schema check --against FILE|URL', 'fixtures check DIR', 'docs']) expect(stdout).toContain(`event-ingest ${command}`)
  })

  it('exports the TypeScript model, sorted and the same bytes every time', async () => {
    const first = await eventIngestCommand(['schema', 'export', '--model', 'src/events.ts', '--out', 'events.schema.json'])
    expect(first.code, first.stderr).toBe(0)
    expect(first.stderr).toBe('wrote events.schema.json: 11 events from src/events.ts (export model)\n')
    const saved = await readFile(join(host, 'events.schema.json'), 'utf8')
    const exported = JSON.parse(saved)
    expect(exported.events.map((event: { name: string }) => event.name)).toEqual([
      'AgentHeartbeat', 'BotCommand', 'CartUpdated', 'CheckoutStarted', 'DashboardViewed', 'EmailSent', 'FeatureUsageEvent', 'OrderCreated', 'ProductViewed', 'PromoApplied', 'RefundIssued',
    ])
    const refund = exported.events.at(-1)
    expect(refund).toMatchObject({ name: 'RefundIssued', sources: ['api', 'admin'], description: 'A refund was issued for an order.' })
    expect(refund.payloadSchema.required).toEqual(['orderId', 'amount', 'currency'])
    expect(Object.keys(refund.payloadSchema.properties.amount)).toEqual(['exclusiveMinimum', 'maximum', 'type'])
    expect(Object.keys(exported)).toEqual([...Object.keys(exported)].sort())
    expect(saved.endsWith('}\n')).toBe(true)

    const again = await eventIngestCommand(['schema', 'export', '--model', 'src/events.ts'])
    expect(again.code).toBe(0)
    expect(again.stdout).toBe(saved)
  })

  it('accepts a compatible change (a new optional field, a new event, a widened bound) with exit 0, listing it', async () => {
    await writeFile(join(host, 'src/events.ts'), modelSource(
      original.replace('max(10000)', 'max(50000)') + ", note: z.string().optional()",
      ", RefundFailed: { sources: ['api'] }",
    ))
    const { code, stdout, stderr } = await eventIngestCommand(['schema', 'check', '--against', 'events.schema.json', '--model', 'src/events.ts'])
    expect(code, stderr).toBe(0)
    expect(stdout.trim().split('\n')).toEqual([
      'compatible RefundIssued  payload.amount  bound-loosened: upper bound <= 10000 → <= 50000',
      'compatible RefundIssued  payload.note  field-added: new optional field note',
      'compatible RefundFailed  name  event-added: new event RefundFailed (api)',
      'compatible against events.schema.json: no breaking change, 3 compatible changes',
    ])
  })

  it('fails a breaking change with exit 1, one line per change naming the event, the path and the rule, as the README shows', async () => {
    await writeFile(join(host, 'src/events.ts'), modelSource(original.replace('reason: z.string().max(200).optional()', 'reason: z.string().max(100), note: z.string().optional()')).replace("sources: ['api', 'admin']", "sources: ['api']"))
    const { code, stdout } = await eventIngestCommand(['schema', 'check', '--against', 'events.schema.json', '--model', 'src/events.ts'])
    expect(code).toBe(1)
    expect(stdout.trim().split('\n')).toEqual([
      'BREAKING   RefundIssued  sources  source-removed: source "admin" is no longer expected (now api)',
      'BREAKING   RefundIssued  payload.reason  field-made-required: reason was optional and is now required',
      'BREAKING   RefundIssued  payload.reason  bound-tightened: maxLength 200 → 100',
      'compatible RefundIssued  payload.note  field-added: new optional field note',
      '3 breaking changes against events.schema.json (1 compatible change)',
    ])
    const readme = await readFile(join(projectRoot, 'README.md'), 'utf8')
    expect(readme).toContain(`A breaking change fails the build, one line each:\n\n\`\`\`\n${stdout}\`\`\``)

    const json = await eventIngestCommand(['schema', 'check', '--against', 'events.schema.json', '--model', 'src/events.ts', '--json'])
    expect(json.code).toBe(1)
    const report = JSON.parse(json.stdout)
    expect(report.compatible).toBe(false)
    expect(report.breaking.map((change: { rule: string }) => change.rule)).toEqual(['source-removed', 'field-made-required', 'bound-tightened'])
  })

  it("checks against a running server's GET /events/schema", async () => {
    const ingest = createEventIngest({ storage: 'memory:' })
    server = createServer(express().use(eventIngest(ingest)))
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/events/schema`
    // The server runs the canonical model; the host's adds RefundIssued to it.
    const { code, stdout, stderr } = await eventIngestCommand(['schema', 'check', '--against', url, '--model', 'src/events.ts'])
    expect(code, stderr).toBe(0)
    expect(stdout).toContain('compatible RefundIssued  name  event-added')
    expect(stdout).toContain(`compatible against ${url}: no breaking change, 1 compatible change`)
    // Against the host's model, the canonical one has lost RefundIssued.
    await writeFile(join(host, 'canonical.mjs'), "import { createEventModel } from 'event-ingest'\nexport default createEventModel()\n")
    const removed = await eventIngestCommand(['schema', 'check', '--against', 'events.schema.json', '--model', 'canonical.mjs'])
    expect(removed.code).toBe(1)
    expect(removed.stdout).toContain('BREAKING   RefundIssued  name  event-removed: event RefundIssued is no longer registered')
    await ingest.close()
  })

  it('exports redaction rules and reports a rule added, changed or removed as compatible, with exit 0', async () => {
    await writeFile(join(host, 'redacting.mjs'), "import { createEventModel } from 'event-ingest'\nexport default createEventModel({ redact: [{ events: ['OrderCreated'], path: 'customer.email', action: 'hash' }, { events: ['OrderCreated'], path: 'items[].note', action: 'drop' }] })\n")
    const exported = await eventIngestCommand(['schema', 'export', '--model', 'redacting.mjs', '--out', 'redacting.schema.json'])
    expect(exported.code, exported.stderr).toBe(0)
    const saved = JSON.parse(await readFile(join(host, 'redacting.schema.json'), 'utf8'))
    expect(saved.events.find((e: { name: string }) => e.name === 'OrderCreated').redact).toEqual([{ action: 'drop', path: 'items[].note' }, { action: 'hash', path: 'customer.email' }])
    await writeFile(join(host, 'redacting.mjs'), "import { createEventModel } from 'event-ingest'\nexport default createEventModel({ redact: [{ events: ['OrderCreated'], path: 'customer.email', action: 'mask' }, { path: 'ip', action: 'drop' }] })\n")
    const { code, stdout, stderr } = await eventIngestCommand(['schema', 'check', '--against', 'redacting.schema.json', '--model', 'redacting.mjs'])
    expect(code, stderr).toBe(0)
    expect(stdout).toContain('compatible OrderCreated  payload.items[].note  redaction-removed: payload.items[].note is no longer redacted (was drop)')
    expect(stdout).toContain('compatible OrderCreated  payload.customer.email  redaction-changed: redaction of payload.customer.email hash → mask')
    expect(stdout).toContain('compatible BotCommand  payload.ip  redaction-added: payload.ip is now redacted at ingest (drop)')
  })

  it('checks the fixtures: exit 0 when all are valid, exit 1 naming each invalid one and its field', async () => {
    await writeFile(join(host, 'src/events.ts'), modelSource(original))
    const valid = await eventIngestCommand(['fixtures', 'check', 'fixtures', '--model', 'src/events.ts'])
    expect(valid.code, valid.stderr).toBe(0)
    expect(valid.stdout).toBe('2 fixtures valid against src/events.ts (export model)\n')

    await writeFile(join(host, 'fixtures/RefundIssued-bad.json'), JSON.stringify([{
      id: 'evt_refund_2', name: 'RefundIssued', schemaVersion: 1, occurredAt: '2026-11-02T14:03:11Z', source: 'api',
      payload: { orderId: 'inv_1', amount: 0, currency: 'EUR' },
    }]))
    const invalid = await eventIngestCommand(['fixtures', 'check', 'fixtures', '--model', 'src/events.ts'])
    expect(invalid.code).toBe(1)
    const lines = invalid.stdout.trim().split('\n')
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/^FAIL RefundIssued-bad\.json\[0\] \(evt_refund_2\): payload\.orderId: .*; payload\.amount: /)
    expect(lines[1]).toBe('1 of 3 fixtures invalid against src/events.ts (export model)')
    await rm(join(host, 'fixtures/RefundIssued-bad.json'))
  })

  it('writes the event catalog as Markdown, with payload fields and an example from the fixtures', async () => {
    const { code, stdout, stderr } = await eventIngestCommand(['docs', '--model', 'src/events.ts', '--fixtures', 'fixtures'])
    expect(code, stderr).toBe(0)
    expect(stdout).toMatch(/^# Event catalog\n/)
    expect(stdout).toContain('| [RefundIssued](#refundissued) | api, admin | A refund was issued for an order. |')
    const section = stdout.slice(stdout.indexOf('## RefundIssued'))
    expect(section).toContain('A refund was issued for an order.\n\nExpected sources: `api`, `admin`.')
    expect(section).toContain('| `orderId` | string | required | pattern `^ord_` | The refunded order |')
    expect(section).toContain('| `amount` | number | required | > 0, ≤ 10000 |  |')
    expect(section).toContain('| `currency` | "EUR" \\| "USD" | required |  |  |')
    expect(section).toContain('| `reason` | string | optional | at most 200 chars |  |')
    expect(section).toContain('Example (`RefundIssued.json`):\n\n```json\n{\n  "id": "evt_refund_1"')
    expect(stdout).toContain('## ProductViewed\n\nA shopper viewed a product page.\n\nExpected sources: `storefront`.\n\nPayload: any JSON object (no payload schema).')

    const written = await eventIngestCommand(['docs', '--model', 'src/events.ts', '--fixtures', 'fixtures', '--out', 'docs/events.md'])
    expect(written.code).toBe(0)
    expect(await readFile(join(host, 'docs/events.md'), 'utf8')).toBe(stdout)
  })

  it('says what is wrong, with exit 2, for a missing model, a model module without a model, and a bad export file', async () => {
    const missing = await eventIngestCommand(['schema', 'export', '--model', 'src/nope.ts'])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/^event-ingest: --model src\/nope\.ts: no such file/)

    await writeFile(join(host, 'empty.mjs'), 'export const answer = 42\n')
    const none = await eventIngestCommand(['schema', 'export', '--model', 'empty.mjs'])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('--model empty.mjs exports no event model')

    await writeFile(join(host, 'bad.json'), JSON.stringify({ events: [{ name: 'A', sources: 'api' }] }))
    const bad = await eventIngestCommand(['schema', 'check', '--against', 'bad.json'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toBe('event-ingest: bad.json is not an event model export: events[0].sources must be an array of strings, got "api"\n')

    const usage = await eventIngestCommand(['schema', 'check'])
    expect(usage.code).toBe(2)
    expect(usage.stderr).toContain('schema check needs --against FILE|URL')
  })
})
