import { describe, expect, it } from 'vitest'
import { createStorage, defineDriver } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { createEventIngest, createEventModel } from 'event-ingest'
import { makeEvent } from '../helpers/fixtures'

describe('options are checked when the core is created', () => {
  it('refuses an unknown storage string at once', () => {
    expect(() => createEventIngest({ env: {}, storage: 'mysql://db' })).toThrow(/is not one of memory:, fs:<dir>, redis:\/\/host:port\/db, postgres:/)
    expect(() => createEventIngest({ env: { EVENT_STORAGE: 'fs:' } })).toThrow(/needs a directory/)
  })

  it('refuses a token variable that is set but holds no token, instead of leaving ingest open', () => {
    expect(() => createEventIngest({ env: { EVENT_INGEST_TOKEN: ' , ' } })).toThrow(/EVENT_INGEST_TOKEN is set but holds no token/)
    expect(() => createEventIngest({ env: {}, adminToken: [] })).toThrow(/adminToken is set but holds no token/)
    expect(() => createEventIngest({ env: { EVENT_INGEST_TOKEN: '' } })).not.toThrow()
  })

  it('refuses numbers that are not positive', () => {
    expect(() => createEventIngest({ env: {}, dedupeWindowMs: Number.NaN })).toThrow(/dedupeWindowMs must be a positive number, got NaN/)
    expect(() => createEventIngest({ env: {}, storageTimeoutMs: 0 })).toThrow(/storageTimeoutMs/)
    expect(() => createEventIngest({ env: {}, stats: { windowMinutes: 0 } })).toThrow(/stats.windowMinutes/)
    expect(() => createEventIngest({ env: {}, refusalDrain: { maxBytes: 0 } })).toThrow(/refusalDrain.maxBytes must be a positive number, got 0/)
    expect(() => createEventIngest({ env: {}, refusalDrain: { maxMs: -1 } })).toThrow(/refusalDrain.maxMs must be a positive number, got -1/)
    expect(createEventIngest({ env: {} }).refusalDrain).toEqual({ maxBytes: 1_048_576, maxMs: 2000 })
    expect(() => createEventIngest({ env: {}, sink: { url: 'http://sink', timeoutMs: 5000, leaseMs: 1000 } })).toThrow(/leaseMs \(1000\) must be longer than sink.timeoutMs \(5000\)/)
    expect(() => createEventIngest({ env: {}, sink: 'ftp://sink' })).toThrow(/sink url must be an http\(s\) URL/)
  })

  it('refuses model options next to a model', () => {
    expect(() => createEventIngest({ env: {}, model: createEventModel(), events: { X: { sources: ['api'] } } })).toThrow(/createEventModel/)
  })

  it('never writes into the sink options it is given', async () => {
    const sink = Object.freeze({ url: 'http://127.0.0.1:9/sink' })
    const ingest = createEventIngest({ env: { EVENT_SINK_TOKEN: 'secret' }, sink })
    expect(sink).toEqual({ url: 'http://127.0.0.1:9/sink' })
    await ingest.close()
  })
})

describe('the neutral handler', () => {
  it('matches header names of a hand-built request case-insensitively', async () => {
    const ingest = createEventIngest({ env: {}, token: 'abc' })
    try {
      const response = await ingest.handle({
        method: 'POST',
        path: '/events/ingest',
        headers: { 'Content-Type': 'application/json', 'X-Event-Token': 'abc' },
        body: { bytes: JSON.stringify([makeEvent()]) },
      })
      expect(response?.status).toBe(200)
    } finally {
      await ingest.close()
    }
  })

  it('answers admin reads with 503 in the JSON format when storage fails', async () => {
    const memory = memoryDriver()
    const broken = defineDriver(() => ({ ...memory, name: 'broken', getItem: () => Promise.reject(new Error('disk gone')), getItems: () => Promise.reject(new Error('disk gone')) }))
    const ingest = createEventIngest({ env: {}, adminToken: 't', storage: createStorage({ driver: broken() }), onError: () => {} })
    try {
      for (const path of ['/admin/events/stats', '/admin/events']) {
        const response = await ingest.handle({ method: 'GET', path, headers: { authorization: 'Bearer t' } })
        expect(response?.status, path).toBe(503)
        expect(JSON.parse(response!.body)).toMatchObject({ code: 'storage_unavailable', message: expect.stringContaining('disk gone') })
      }
    } finally {
      await ingest.close()
    }
  })
})

describe('every option is checked when the core is created, naming it', () => {
  const sink = 'http://127.0.0.1:9/sink'
  const bad: [label: string, options: Record<string, unknown>, kind: typeof TypeError | typeof RangeError, message: RegExp][] = [
    ['options not an object', 5 as never, TypeError, /options must be an object/],
    ['a misspelt option, which would leave ingest open', { tokn: 'secret' }, TypeError, /^\[event-ingest\] tokn is not an option \(did you mean token\?\); known: model, /],
    ['an unknown stats option', { stats: { windowMinute: 5 } }, TypeError, /stats.windowMinute is not an option \(did you mean stats.windowMinutes\?\)/],
    ['an unknown refusalDrain option', { refusalDrain: { maxByte: 5 } }, TypeError, /refusalDrain.maxByte is not an option/],
    ['an unknown cors option', { cors: { origin: '*', origins: ['x'] } }, TypeError, /cors.origins is not an option/],
    ['model not made by createEventModel', { model: {} }, TypeError, /model must be made by createEventModel\(\), got an object/],
    ['events not an object', { events: [] }, TypeError, /events must be an object/],
    ['a payload schema that is not zod', { events: { RefundIssued: { sources: ['api'], payload: { parse: () => ({}) } } } }, TypeError, /the payload schema of RefundIssued is not a zod 4 schema/],
    ['a description that is not text', { events: { RefundIssued: { sources: ['api'], description: 5 } } }, TypeError, /the description of RefundIssued must be a string/],
    ['a definition that is not an object', { events: { RefundIssued: true } }, TypeError, /event "RefundIssued" must be defined as/],
    ['sourcePolicy', { sourcePolicy: 'maybe' }, TypeError, /sourcePolicy must be "reject" or "accept"/],
    ['limits not an object', { limits: 5 }, TypeError, /limits must be an object, got 5/],
    ['a limit that is not an integer', { limits: { maxEvents: 1.5 } }, TypeError, /limits.maxEvents must be a positive integer, got 1.5/],
    ['an unknown limit', { limits: { maxBody: 5 } }, TypeError, /unknown limit "maxBody"/],
    ['storage of another type', { storage: 5 }, TypeError, /storage must be a connection string/],
    ['an unknown storage driver', { storage: { driver: 'mysql' } }, TypeError, /unknown storage driver "mysql"; use memory, fs, redis or postgres/],
    ['a postgres storage with another scheme', { storage: { driver: 'postgres', url: 'mysql://127.0.0.1/test' } }, TypeError, /storage.url must be a postgres:\/\/ or postgresql:\/\/ URL/],
    ['a postgres schema that is not an identifier', { storage: { driver: 'postgres', schema: '1events' } }, TypeError, /storage.schema must be an SQL identifier/],
    ['a postgres schema of 64 characters', { storage: { driver: 'postgres', schema: 'a'.repeat(64) } }, TypeError, /storage.schema must be an SQL identifier/],
    ['a postgres schema with a quote', { storage: { driver: 'postgres', schema: 'a"b' } }, TypeError, /storage.schema must be an SQL identifier/],
    ['postgres createSchema not a boolean', { storage: { driver: 'postgres', createSchema: 'no' } }, TypeError, /storage.createSchema must be a boolean/],
    ['a postgres pool of 0', { storage: { driver: 'postgres', max: 0 } }, RangeError, /storage.max must be a positive integer/],
    ['a postgres pool of 1.5', { storage: { driver: 'postgres', max: 1.5 } }, RangeError, /storage.max must be a positive integer/],
    ['a postgres connectTimeout of 0', { storage: { driver: 'postgres', connectTimeout: 0 } }, RangeError, /storage.connectTimeout must be a positive integer number of ms, got 0/],
    ['a postgres statementTimeout of -1', { storage: { driver: 'postgres', statementTimeout: -1 } }, RangeError, /storage.statementTimeout must be a positive integer number of ms, got -1/],
    ['an unknown postgres option', { storage: { driver: 'postgres', shema: 'x' } }, TypeError, /unknown postgres storage option storage.shema/],
    ['EVENT_STORAGE postgres with no host', { env: { EVENT_STORAGE: 'postgres:/db' } }, TypeError, /EVENT_STORAGE: storage "postgres:\/db" is not one of/],
    ['an fs storage without a directory', { storage: { driver: 'fs' } }, TypeError, /storage \{ driver: "fs" \} needs a base directory/],
    ['an fs storage with fsync not a boolean', { storage: { driver: 'fs', base: '/tmp/x', fsync: 'yes' } }, TypeError, /storage.fsync must be a boolean/],
    ['a redis storage with another scheme', { storage: { driver: 'redis', url: 'http://127.0.0.1:6379' } }, TypeError, /storage.url must be a redis:\/\/ or rediss:\/\/ URL/],
    ['a redis storage timeout of 0', { storage: { driver: 'redis', commandTimeout: 0 } }, RangeError, /storage.commandTimeout must be a positive number of ms, got 0/],
    ['EVENT_STORAGE', { env: { EVENT_STORAGE: 'redis:/127.0.0.1' } }, TypeError, /EVENT_STORAGE: storage "redis:\/127.0.0.1" is not one of memory:, fs:<dir>, redis:/],
    ['token of another type', { token: 5 }, TypeError, /token must be a string or an array of strings, got 5/],
    ['adminToken with a non-string', { adminToken: ['a', 1] }, TypeError, /adminToken must be a string or an array of strings/],
    ['EVENT_INGEST_TOKEN of commas', { env: { EVENT_INGEST_TOKEN: ',,' } }, TypeError, /EVENT_INGEST_TOKEN is set but holds no token/],
    ['authorize', { authorize: 'yes' }, TypeError, /authorize must be a function, got "yes"/],
    ['onError', { onError: {} }, TypeError, /onError must be a function, got an object/],
    ['env', { env: 'production' }, TypeError, /env must be an object/],
    ['dedupeWindowMs of text', { dedupeWindowMs: '86400000' }, TypeError, /dedupeWindowMs must be a positive number, got "86400000"/],
    ['dedupeWindowMs infinite', { dedupeWindowMs: Infinity }, RangeError, /dedupeWindowMs must be a positive number, got Infinity/],
    ['retentionMs negative', { retentionMs: -1 }, RangeError, /retentionMs must be a positive number/],
    ['retentionMs under the dedupe window', { retentionMs: 1000 }, RangeError, /retentionMs \(1000\) must be at least dedupeWindowMs/],
    ['pruneIntervalMs without retentionMs', { pruneIntervalMs: 1000 }, TypeError, /pruneIntervalMs is set but retentionMs is not/],
    ['pruneIntervalMs over the longest timer', { retentionMs: 86_400_000, pruneIntervalMs: 2 ** 31 }, RangeError, /pruneIntervalMs must be at most 2147483647/],
    ['storageTimeoutMs over the longest timer', { storageTimeoutMs: 2 ** 31 }, RangeError, /storageTimeoutMs must be at most 2147483647/],
    ['retryAfterSeconds not whole', { retryAfterSeconds: 1.5 }, RangeError, /retryAfterSeconds must be a positive integer, got 1.5/],
    ['instanceId of another type', { instanceId: 5 }, TypeError, /instanceId must be 1-64 letters/],
    ['sink of another type', { sink: 5 }, TypeError, /sink must be a URL, \{ url, \.\.\. \} or false, got 5/],
    ['a sink URL without a scheme', { sink: '127.0.0.1:3000/sink' }, TypeError, /sink url must be an http\(s\) URL/],
    ['EVENT_SINK_URL without a scheme', { env: { EVENT_SINK_URL: 'localhost:3000/sink' } }, TypeError, /EVENT_SINK_URL: sink url must be an http\(s\) URL/],
    ['a sink URL with no host', { sink: 'http://' }, TypeError, /sink url must be an http\(s\) URL/],
    ['sink.maxBatchEvents not whole', { sink: { url: sink, maxBatchEvents: 1.5 } }, RangeError, /sink.maxBatchEvents must be a positive integer, got 1.5/],
    ['sink.timeoutMs of text', { sink: { url: sink, timeoutMs: '10s' } }, TypeError, /sink.timeoutMs must be a positive number, got "10s"/],
    ['sink.wait', { sink: { url: sink, wait: 'yes' } }, TypeError, /sink.wait must be true or false/],
    ['sink.token', { sink: { url: sink, token: 42 } }, TypeError, /sink.token must be a string, got 42/],
    ['sink.tokenHeader', { sink: { url: sink, tokenHeader: 'x token' } }, TypeError, /sink.tokenHeader must be a header name/],
    ['sink.headers', { sink: { url: sink, headers: { 'x-team': 7 } } }, TypeError, /sink.headers\["x-team"\] must be a string, got 7/],
    ['cors.origin', { cors: { origin: 5 } }, TypeError, /cors.origin must be '\*', an array of origins or a function/],
    ['cors.maxAge', { cors: { origin: '*', maxAge: -1 } }, RangeError, /cors.maxAge must be a non-negative integer, got -1/],
    ['stats not an object', { stats: 60 }, TypeError, /stats must be an object, got 60/],
    ['stats.windowMinutes not whole', { stats: { windowMinutes: 1.5 } }, RangeError, /stats.windowMinutes must be a positive integer, got 1.5/],
    ['stats.futureToleranceMs negative', { stats: { futureToleranceMs: -1 } }, RangeError, /stats.futureToleranceMs must be a non-negative number, got -1/],
    ['stats.flushIntervalMs of text', { stats: { flushIntervalMs: 'often' } }, TypeError, /stats.flushIntervalMs must be a non-negative number, got "often"/],
  ]

  it.each(bad)('%s', (_label, options, kind, message) => {
    let thrown: unknown
    try {
      const ingest = createEventIngest((typeof options === 'object' ? { env: {}, ...options } : options) as never)
      void ingest.close()
    } catch (error) {
      thrown = error
    }
    expect(thrown, 'createEventIngest threw').toBeInstanceOf(kind)
    expect((thrown as Error).message).toMatch(/^\[event-ingest\] (?!\[event-ingest\])/)
    expect((thrown as Error).message).toMatch(message)
  })

  it('accepts each of those options with a good value', async () => {
    const ingest = createEventIngest({
      env: { EVENT_STORAGE: 'memory:', EVENT_INGEST_TOKEN: 'a,b' },
      events: { RefundIssued: { sources: ['api'], description: 'A refund was issued.' } },
      limits: { maxEvents: 10 },
      adminToken: ['x', 'y'],
      authorize: () => true,
      onError: () => {},
      dedupeWindowMs: 60_000,
      retentionMs: 60_000,
      pruneIntervalMs: 60_000,
      storageTimeoutMs: 1000,
      retryAfterSeconds: 1,
      sink: { url: sink, maxBatchEvents: 10, wait: false, tokenHeader: 'x-sink-token', headers: { 'x-team': 'a' } },
      cors: { origin: ['https://shop.example'], maxAge: 0 },
      stats: { windowMinutes: 5, futureToleranceMs: 0, flushIntervalMs: 0 },
    })
    await ingest.ready()
    await ingest.close()
  })
})
