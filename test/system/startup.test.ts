import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { z as z3 } from 'zod3'
import { createEventIngest, createEventModel, IngestError, type EventIngest } from 'event-ingest'
import { makeEvent } from '../helpers/fixtures'
import { startOwnRedis, type OwnRedis } from '../helpers/redis'
import { waitFor } from '../helpers/sink'

const post = (ingest: EventIngest<any>, body: unknown) =>
  ingest.handle({ method: 'POST', path: '/events/ingest', headers: { 'content-type': 'application/json' }, body: { bytes: JSON.stringify(body) } })

describe('an fs directory that cannot be used fails when the core starts', () => {
  let dir: string
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('rejects ready() naming the path and the reason, reports it once, and answers ingest with 503 JSON saying so', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ei-startup-'))
    const file = join(dir, 'a-file')
    await writeFile(file, 'not a directory')
    const reported: unknown[] = []
    const ingest = createEventIngest({ env: {}, storage: `fs:${file}/events`, onError: (error) => reported.push(error) })
    await expect(ingest.ready()).rejects.toThrow(`[event-ingest] fs storage directory "${file}/events" cannot be used: a file is in the way of the directory (ENOTDIR)`)
    expect(reported.map((error) => (error as Error).message)).toEqual([expect.stringMatching(/^\[event-ingest\] fs storage directory .* cannot be used/)])
    const response = await post(ingest, [makeEvent()])
    expect(response?.status).toBe(503)
    expect(JSON.parse(response!.body)).toEqual({ code: 'storage_unavailable', message: `storage is unavailable: fs storage directory "${file}/events" cannot be used: a file is in the way of the directory (ENOTDIR)` })
    await ingest.close()
  })

  it('creates a missing directory at start and leaves nothing of its check behind', async () => {
    dir ??= await mkdtemp(join(tmpdir(), 'ei-startup-'))
    const base = join(dir, 'new', 'events')
    const ingest = createEventIngest({ env: {}, storage: `fs:${base}` })
    await ingest.ready()
    expect(await readdir(base)).toEqual([])
    await ingest.close()
  })
})

describe('a Redis that cannot be reached at start', () => {
  let redis: OwnRedis | undefined
  let ingest: EventIngest<any> | undefined
  afterEach(async () => {
    await ingest?.close()
    await redis?.dispose()
    ingest = redis = undefined
  })

  it('is said once, naming the driver, the address and the reason; the host works once Redis is up', async () => {
    redis = await startOwnRedis()
    await redis.stop()
    const reported: string[] = []
    ingest = createEventIngest({
      env: {},
      storage: { driver: 'redis', url: `${redis.url}/0`, base: 'startup' },
      stats: { flushIntervalMs: 100 },
      onError: (error) => reported.push((error as Error).message),
    })
    await ingest.ready()
    expect(reported).toEqual([`[event-ingest] redis storage at 127.0.0.1:${redis.port} is unreachable (ECONNREFUSED); retrying in the background`])
    await expect(ingest.ingest([makeEvent()])).rejects.toBeInstanceOf(IngestError)
    // Stats flushes fail every 100 ms meanwhile: the one line above is not repeated for each.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(reported).toHaveLength(1)

    await redis.start()
    await waitFor(async () => (await post(ingest!, [makeEvent()]))?.status === 200, 10_000, 'ingest to succeed once Redis is up')
    expect((await ingest.events()).events.length).toBeGreaterThan(0)
  })

  it('is said again, once, when Redis goes away later', async () => {
    redis = await startOwnRedis()
    const reported: string[] = []
    ingest = createEventIngest({ env: {}, storage: { driver: 'redis', url: redis.url, base: 'startup' }, onError: (error) => reported.push((error as Error).message) })
    await ingest.ready()
    expect(reported).toEqual([])
    await redis.stop()
    await waitFor(() => reported.length > 0, 5000, 'the outage to be reported')
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect(reported).toEqual([`[event-ingest] redis storage at 127.0.0.1:${redis.port} is unreachable (ECONNREFUSED); retrying in the background`])
  })
})

describe('payload schemas must be zod 4, the peer dependency', () => {
  it('refuses a zod 3 schema when the model is created, naming the event', () => {
    expect(() =>
      createEventModel({
        // @ts-expect-error a zod 3 schema is not a zod 4 ZodType
        events: { RefundIssued: { sources: ['api'], payload: z3.object({ orderId: z3.string() }) } },
      }),
    ).toThrow(/^\[event-ingest\] the payload schema of RefundIssued is not a zod 4 schema \(it looks like a zod 3 schema\): .*install zod@\^4/)
  })

  it('refuses an object shaped like a zod 3 schema (a _def and no _zod) through createEventIngest', () => {
    const zod3Shaped = { _def: { typeName: 'ZodObject' }, parse: (value: unknown) => value, safeParse: (value: unknown) => ({ success: true, data: value }) }
    expect(() => createEventIngest({ env: {}, events: { RefundIssued: { sources: ['api'], payload: zod3Shaped as never } } })).toThrow(TypeError)
    expect(() => createEventIngest({ env: {}, events: { RefundIssued: { sources: ['api'], payload: zod3Shaped as never } } })).toThrow(/the payload schema of RefundIssued is not a zod 4 schema \(it looks like a zod 3 schema\)/)
  })

  it('takes zod 4 schemas, and publishes them', () => {
    const model = createEventModel({ events: { RefundIssued: { sources: ['api'], payload: z.object({ orderId: z.string() }) } } })
    expect(model.describe().events.find((event) => event.name === 'RefundIssued')).toBeDefined()
  })
})
