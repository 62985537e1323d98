import { afterEach, describe, expect, it } from 'vitest'
import { createEventIngest, SinkRefusal, SinkRetry, type DeliverBatch, type EventIngest, type SinkOptions } from 'event-ingest'
import { makeEvent } from '../helpers/fixtures'
import { postEvents } from '../helpers/http'
import { h3Host, startHost } from '../helpers/servers'
import { waitFor } from '../helpers/sink'

// A host's own `deliver(batch)` as the sink, through the same outbox, backoff and dead letters.

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

const fast = { minBackoffMs: 20, maxBackoffMs: 200, heartbeatMs: 200 } satisfies Partial<SinkOptions>

async function core(deliver: SinkOptions['deliver'], extra: Partial<SinkOptions> = {}): Promise<EventIngest<any>> {
  const ingest = createEventIngest({ env: {}, sink: { ...fast, deliver, ...extra } })
  await ingest.ready()
  open.push(ingest)
  return ingest
}

describe('deliver function sink', () => {
  it('hands each batch received over HTTP to deliver, with its key, events and body', async () => {
    const batches: DeliverBatch[] = []
    const host = await startHost(h3Host, { env: {}, sink: { ...fast, type: 'deliver', deliver: (batch: DeliverBatch) => void batches.push(batch) } })
    open.push(host)
    expect((await postEvents(host.url, [makeEvent({ id: 'dl-1' }), makeEvent({ id: 'dl-2' })])).status).toBe(200)
    await waitFor(async () => (await host.ingest.stats()).forwarded === 2, 5000, 'delivery')
    expect(batches).toHaveLength(1)
    expect(batches[0]!.events.map((e) => e.id)).toEqual(['dl-1', 'dl-2'])
    expect(JSON.parse(batches[0]!.body).map((e: { id: string }) => e.id)).toEqual(['dl-1', 'dl-2'])
    expect(batches[0]!.key).toMatch(/^[0-9a-f]{32}$/)
    expect(batches[0]!.attempt).toBe(1)
    expect((await host.ingest.stats()).forwarding!.sink).toBe('deliver')
  })

  it('retries a throwing deliver with backoff, with the same key, until it resolves', async () => {
    const calls: DeliverBatch[] = []
    const ingest = await core(async (batch) => {
      calls.push(batch)
      if (calls.length <= 3) throw new Error('broker unavailable')
    })
    await ingest.ingest([makeEvent({ id: 'dl-retry' })])
    await waitFor(async () => (await ingest.stats()).forwarded === 1, 5000, 'delivery')
    expect(calls.map((c) => c.attempt)).toEqual([1, 2, 3, 4])
    expect(new Set(calls.map((c) => c.key)).size).toBe(1)
    expect((await ingest.stats()).failures.forwardByKind['5xx']).toBe(3)
    expect(await ingest.deadLetters()).toEqual([])
  })

  it('waits the delay a SinkRetry asks for', async () => {
    const at: number[] = []
    const ingest = await core(async () => {
      at.push(Date.now())
      if (at.length === 1) throw new SinkRetry('throttled', 1000)
    })
    await ingest.ingest([makeEvent({ id: 'dl-later' })])
    await waitFor(async () => (await ingest.stats()).forwarded === 1, 5000, 'delivery')
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(950)
  })

  it('dead-letters a batch refused with SinkRefusal, once, and requeues it', async () => {
    let refuse = true
    const delivered: string[] = []
    const ingest = await core(async (batch) => {
      if (refuse) throw new SinkRefusal('topic "orders" does not exist')
      delivered.push(...batch.events.map((e) => e.id as string))
    })
    await ingest.ingest([makeEvent({ id: 'dl-refused' })])
    await waitFor(async () => (await ingest.deadLetters()).length === 1, 5000, 'the dead letter')
    const [letter] = await ingest.deadLetters()
    expect(letter).toMatchObject({ events: 1, status: 422, attempts: 1, body: 'topic "orders" does not exist' })
    expect((await ingest.stats()).failures.forwardByKind.rejected).toBe(1)
    refuse = false
    expect(await ingest.requeue()).toBe(1)
    await waitFor(() => delivered.length === 1, 5000, 'delivery after requeue')
    expect(delivered).toEqual(['dl-refused'])
  })

  it('retries a deliver call that outlives timeoutMs', async () => {
    let calls = 0
    const ingest = await core(async () => {
      calls++
      if (calls === 1) await new Promise(() => {})
    }, { timeoutMs: 100, leaseMs: 1000 })
    await ingest.ingest([makeEvent({ id: 'dl-hang' })])
    await waitFor(async () => (await ingest.stats()).forwarded === 1, 5000, 'delivery after the time limit')
    expect(calls).toBe(2)
    expect((await ingest.stats()).failures.forwardByKind.timeout).toBe(1)
  })

  it('refuses bad options, naming the option', () => {
    expect(() => createEventIngest({ env: {}, sink: { type: 'deliver' } })).toThrow(/sink\.deliver must be a function for a deliver sink/)
    expect(() => createEventIngest({ env: {}, sink: { deliver: 'kafka' as never } })).toThrow(/sink\.deliver must be a function/)
    expect(() => createEventIngest({ env: {}, sink: { type: 'http', url: 'http://127.0.0.1:1/sink', deliver: async () => {} } })).toThrow(/sink\.deliver is for sink\.type 'deliver', not 'http'/)
  })
})
