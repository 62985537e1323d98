import { describe, expect, it } from 'vitest'
import { createStorage, defineDriver } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { createEventIngest, createEventModel } from 'event-ingest'
import { makeEvent } from './helpers/fixtures'

describe('options are checked when the core is created', () => {
  it('refuses an unknown storage string at once', () => {
    expect(() => createEventIngest({ env: {}, storage: 'postgres://db' })).toThrow(/is not one of memory:, fs:<dir>, redis:/)
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
    expect(() => createEventIngest({ env: {}, sink: 'ftp://sink' })).toThrow(/sink url must be http/)
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
