import { execFile, spawn } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeEvent } from '../helpers/fixtures'
import { freePort, projectRoot } from '../helpers/process'
import { waitFor } from '../helpers/sink'

/**
 * The package as a user gets it: packed from a fresh checkout (no dist/, so `prepack` must build
 * it), installed from the tarball into a new project next to Express 4 (and without ioredis), and
 * used from there as plain Node ESM and as TypeScript with skipLibCheck off.
 */
const run = promisify(execFile)
const readme = await readFile(join(projectRoot, 'README.md'), 'utf8')
const example = (name: string) => new RegExp(`<!-- example: ${name} -->\\s*\`\`\`ts\\n([\\s\\S]*?)\`\`\``).exec(readme)![1]!

let dir: string
let app: string
let packed: { filename: string; files: { path: string }[] }

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ei-package-'))
  // A fresh checkout: the files git would hand over (tracked and new, never ignored ones like dist/).
  const checkout = join(dir, 'checkout')
  const { stdout } = await run('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: projectRoot, maxBuffer: 16 * 1024 * 1024 })
  for (const file of stdout.split('\0').filter(Boolean)) {
    const exists = await stat(join(projectRoot, file)).then(() => true, () => false)
    if (!exists) continue
    await mkdir(dirname(join(checkout, file)), { recursive: true })
    await cp(join(projectRoot, file), join(checkout, file))
  }
  await symlink(join(projectRoot, 'node_modules'), join(checkout, 'node_modules'), 'dir')
  const pack = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: checkout, maxBuffer: 16 * 1024 * 1024 })
  packed = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('[')))[0]

  app = join(dir, 'app')
  await mkdir(app)
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'host-app', private: true, type: 'module' }))
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, packed.filename), 'express@^4.21.2', '@types/express@^4.17.21', '@types/node@^20'], { cwd: app, maxBuffer: 16 * 1024 * 1024 })
}, 600_000)

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

/** Runs a script of the app with node; resolves with its exit code and output. */
function node(file: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [file], { cwd: app, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
  return { child, exited, stdout: () => stdout, stderr: () => stderr }
}


/** Writes a script of the app that creates a core with `options`, mounts it in Express and posts `[]`; it prints what ready() said and the answer. */
async function readyThenIngestScript(file: string, options: string): Promise<void> {
  await writeFile(join(app, file), `
      import express from 'express'
      import { createEventIngest } from 'event-ingest'
      import { eventIngest } from 'event-ingest/express'
      const ingest = createEventIngest(${options})
      const ready = await ingest.ready().then(() => 'ready', (error) => error.message)
      const server = express().use(eventIngest(ingest)).listen(0, '127.0.0.1', async () => {
        const response = await fetch('http://127.0.0.1:' + server.address().port + '/events/ingest', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[]' })
        console.log(JSON.stringify({ ready, status: response.status, body: await response.json() }))
        server.close()
        await ingest.close()
      })
    `)
}

describe('the packed package', () => {
  it('ships the built code, its types, the README and the LICENSE', () => {
    const files = packed.files.map((file) => file.path)
    for (const file of ['package.json', 'README.md', 'LICENSE', 'dist/index.mjs', 'dist/index.d.mts', 'dist/adapters/h3.mjs', 'dist/adapters/express.mjs', 'dist/adapters/koa.mjs', 'dist/adapters/fastify.mjs', 'dist/cli.mjs', 'dist/fs.mjs', 'dist/fs.d.mts', 'dist/client.mjs', 'dist/client.d.mts']) {
      expect(files).toContain(file)
    }
  })

  it('installs next to Express 4, with zod 4 as its peer', async () => {
    const express = JSON.parse(await readFile(join(app, 'node_modules/express/package.json'), 'utf8'))
    expect(express.version).toMatch(/^4\./)
    const zod = JSON.parse(await readFile(join(app, 'node_modules/zod/package.json'), 'utf8'))
    expect(zod.version).toMatch(/^4\./)
  })

  it("runs the README's Express example on Express 4 and answers a real request", async () => {
    await writeFile(join(app, 'express.mjs'), example('express'))
    const port = await freePort()
    const server = node('express.mjs', { PORT: String(port) })
    try {
      await waitFor(async () => {
        if (server.child.exitCode !== null) throw new Error(`the example exited: ${server.stderr()}`)
        return fetch(`http://127.0.0.1:${port}/api/events/schema`).then((r) => r.ok, () => false)
      }, 20_000, 'the Express example to listen')
      const response = await fetch(`http://127.0.0.1:${port}/api/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([makeEvent()]) })
      expect(response.status).toBe(200)
      expect(await response.json()).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
      // The README's express.json({ limit: '1mb' }) lets a batch of 1000 events through (the 100 kb default stops at about 400).
      const big = Array.from({ length: 1000 }, () => makeEvent({ payload: { productId: 'prod_0123456789' } }))
      const bigResponse = await fetch(`http://127.0.0.1:${port}/api/events/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(big) })
      expect(bigResponse.status).toBe(200)
      expect((await bigResponse.json()).accepted).toBe(1000)
    } finally {
      server.child.kill('SIGKILL')
    }
  })

  it('serves the fs driver on its own subpath, for a host mounting it in its own storage', async () => {
    await writeFile(join(app, 'fs-driver.mjs'), [
      "import { createStorage } from 'unstorage'",
      "import { fsDriver } from 'event-ingest/fs'",
      "import { mkdtempSync } from 'node:fs'",
      "import { tmpdir } from 'node:os'",
      "import { join } from 'node:path'",
      "const storage = createStorage({ driver: fsDriver({ base: mkdtempSync(join(tmpdir(), 'ei-fs-')) }) })",
      "await storage.setItem('a:b', 'kept')",
      "console.log(await storage.getItem('a:b'))",
    ].join('\n'))
    const script = node('fs-driver.mjs')
    expect(await script.exited, script.stderr()).toBe(0)
    expect(script.stdout().trim()).toBe('kept')
  })

  it("runs the README's core example and prints what it says", async () => {
    await writeFile(join(app, 'core.mjs'), example('core'))
    const core = node('core.mjs')
    expect(await core.exited, core.stderr()).toBe(0)
    const [first, second] = core.stdout().trim().split('\n')
    expect(JSON.parse(first!)).toMatchObject({ accepted: 1, duplicates: 0, rejected: [{ index: 1, id: 'evt_2' }] })
    expect(second).toBe('2026-11-02T14:03:11.000Z')
  })

  it('type-checks a TypeScript consumer: clean with skipLibCheck, and its own declarations clean without', async () => {
    await writeFile(join(app, 'consumer.ts'), [
      "import { z } from 'zod'",
      "import { createEventModel, type InferEvent } from 'event-ingest'",
      example('express'),
      'const model = createEventModel({ events: { RefundIssued: { sources: [\'api\'], payload: z.object({ orderId: z.string() }) } } })',
      'type Event = InferEvent<typeof model>',
      "export function orderOf(event: Event): string | undefined { return event.name === 'RefundIssued' ? event.payload.orderId : undefined }",
      "import { createEventClient } from 'event-ingest/client'",
      "const client = createEventClient({ endpoint: 'http://127.0.0.1:1', source: 'api', model })",
      "export const refund = (): string => client.track('RefundIssued', { orderId: 'o1' })",
      "// @ts-expect-error the payload's type follows from the name",
      "export const wrong = (): string => client.track('RefundIssued', { orderId: 1 })",
    ].join('\n'))
    const tsc = async (skipLibCheck: boolean) => {
      await writeFile(join(app, 'tsconfig.json'), JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, skipLibCheck, noEmit: true, types: ['node'] },
        files: ['consumer.ts'],
      }))
      const result = await run(process.execPath, [join(projectRoot, 'node_modules/typescript/bin/tsc'), '-p', app], { cwd: app }).catch((error: { stdout: string }) => error)
      return (result as { stdout: string }).stdout.split('\n').filter((line) => line.includes('error TS'))
    }
    expect(await tsc(true)).toEqual([])
    // With skipLibCheck off, the only errors are unstorage's: its driver declarations import
    // optional packages a project does not have. Nothing in event-ingest's declarations, the
    // consumer, zod or Express 4's types.
    const errors = await tsc(false)
    expect(errors.filter((line) => !line.startsWith('node_modules/unstorage/'))).toEqual([])
  }, 240_000)

  it('runs event-ingest/client from plain Node ESM: a standalone module that imports nothing', async () => {
    const client = await readFile(join(app, 'node_modules/event-ingest/dist/client.mjs'), 'utf8')
    expect(client).not.toMatch(/^\s*import\b/m)
    await writeFile(join(app, 'client.mjs'), [
      "import { createEventClient, EventClientError } from 'event-ingest/client'",
      "const client = createEventClient({ endpoint: 'http://127.0.0.1:1', source: 'api', retry: false, onError: (error) => console.log(error instanceof EventClientError, error.code) })",
      "client.track('OrderCreated', { orderId: 'o1' })",
      'await client.close()',
    ].join('\n'))
    const script = node('client.mjs')
    expect(await script.exited, script.stderr()).toBe(0)
    expect(script.stdout().trim()).toBe('true retries_exhausted')
  })

  it('installs the event-ingest command: exports a model, and a breaking change fails the check with exit 1', async () => {
    await writeFile(join(app, 'events.mjs'), [
      "import { z } from 'zod'",
      "import { createEventModel } from 'event-ingest'",
      "export default createEventModel({ events: { RefundIssued: { sources: ['api'], payload: z.object({ orderId: z.string(), note: z.string().optional() }) } } })",
    ].join('\n'))
    const bin = join(app, 'node_modules/.bin/event-ingest')
    const exported = await run(bin, ['schema', 'export', '--model', 'events.mjs', '--out', 'events.schema.json'], { cwd: app })
    expect(exported.stderr).toBe('wrote events.schema.json: 11 events from events.mjs (export default)\n')
    expect(JSON.parse(await readFile(join(app, 'events.schema.json'), 'utf8')).events.at(-1).name).toBe('RefundIssued')
    await writeFile(join(app, 'events.mjs'), (await readFile(join(app, 'events.mjs'), 'utf8')).replace('note: z.string().optional()', 'note: z.string()'))
    const check = await run(bin, ['schema', 'check', '--against', 'events.schema.json', '--model', 'events.mjs'], { cwd: app }).then(() => ({ code: 0, stdout: '' }), (error: { code: number; stdout: string }) => error)
    expect(check.code).toBe(1)
    expect(check.stdout).toContain('BREAKING   RefundIssued  payload.note  field-made-required: note was optional and is now required')
  })

  it('without ioredis, a Redis storage fails ready() in one line and ingest answers 503 JSON (not the host error page)', async () => {
    await expect(stat(join(app, 'node_modules/ioredis'))).rejects.toThrow()
    await writeFile(join(app, 'redis.mjs'), `
      import express from 'express'
      import { createEventIngest } from 'event-ingest'
      import { eventIngest } from 'event-ingest/express'
      const ingest = createEventIngest({ storage: 'redis://127.0.0.1:6379/0' })
      const ready = await ingest.ready().then(() => 'ready', (error) => error.message)
      const server = express().use(eventIngest(ingest)).listen(0, '127.0.0.1', async () => {
        const response = await fetch('http://127.0.0.1:' + server.address().port + '/events/ingest', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[]' })
        console.log(JSON.stringify({ ready, status: response.status, type: response.headers.get('content-type'), body: await response.json() }))
        server.close()
        await ingest.close()
      })
    `)
    const script = node('redis.mjs')
    expect(await script.exited, script.stderr()).toBe(0)
    const missing = 'the redis storage needs the "ioredis" package, which is not installed: npm install ioredis'
    expect(script.stderr().trim()).toBe(`[event-ingest] ${missing}`)
    expect(JSON.parse(script.stdout())).toEqual({
      ready: `[event-ingest] ${missing}`,
      status: 503,
      type: 'application/json; charset=utf-8',
      body: { code: 'storage_unavailable', message: `storage is unavailable: ${missing}` },
    })
  })

  it('without rate-limiter-flexible, rateLimits fails ready() in one line naming the package and ingest answers 503 JSON', async () => {
    await expect(stat(join(app, 'node_modules/rate-limiter-flexible'))).rejects.toThrow()
    await readyThenIngestScript('limits.mjs', '{ rateLimits: { perAddress: { points: 10, durationSeconds: 60 } } }')
    const script = node('limits.mjs')
    expect(await script.exited, script.stderr()).toBe(0)
    const missing = 'rateLimits needs the "rate-limiter-flexible" package, which is not installed: npm install rate-limiter-flexible'
    expect(script.stderr().trim()).toBe(`[event-ingest] ${missing}`)
    expect(JSON.parse(script.stdout())).toEqual({ ready: `[event-ingest] ${missing}`, status: 503, body: { code: 'storage_unavailable', message: `storage is unavailable: ${missing}` } })
  })

  it('without pg, a PostgreSQL storage fails ready() in one line naming the package and ingest answers 503 JSON', async () => {
    await expect(stat(join(app, 'node_modules/pg'))).rejects.toThrow()
    await readyThenIngestScript('postgres.mjs', "{ storage: 'postgres://postgres@127.0.0.1:5432/test' }")
    const script = node('postgres.mjs')
    expect(await script.exited, script.stderr()).toBe(0)
    const missing = 'the postgres storage needs the "pg" package, which is not installed: npm install pg'
    const answer = JSON.parse(script.stdout())
    expect(answer.ready).toBe(`[event-ingest] ${missing}`)
    expect(answer.status).toBe(503)
    expect(answer.body.code).toBe('storage_unavailable')
    expect(answer.body.message).toContain(missing)
  })

  it.each([
    ['prom-client', '{ metrics: true }', 'metrics'],
    ['nats', "{ sink: 'nats://127.0.0.1:4222#events.accepted' }", 'a nats sink'],
    ['ioredis', "{ sink: 'redis://127.0.0.1:6379/0#events' }", 'a redis-stream sink'],
  ])('without %s, createEventIngest(%s) throws at creation naming the package', async (pkg, options, what) => {
    await expect(stat(join(app, 'node_modules', pkg))).rejects.toThrow()
    const file = `peer-${pkg}.mjs`
    await writeFile(join(app, file), `
      import { createEventIngest } from 'event-ingest'
      try {
        createEventIngest(${options})
        console.log('created')
      } catch (error) {
        console.log(error.message)
      }
    `)
    const script = node(file)
    expect(await script.exited, script.stderr()).toBe(0)
    expect(script.stdout().trim()).toBe(`[event-ingest] ${what} needs the "${pkg}" package, which is not installed: npm install ${pkg}`)
  })
})
