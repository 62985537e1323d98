import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { JetStreamManager, NatsConnection } from 'nats'
import { createEventIngest, type EventIngest, type SinkOptions } from 'event-ingest'
import { makeEvent } from '../helpers/fixtures'
import { postEvents } from '../helpers/http'
import { connectNats, natsUrl, startOwnNats, uniqueName } from '../helpers/nats'
import { h3Host, startHost } from '../helpers/servers'
import { waitFor } from '../helpers/sink'
import { startTcpProxy } from '../helpers/tcp-proxy'

// A NATS JetStream sink against real servers: the shared one (own streams and subjects, deleted
// afterwards) and a private one for NATS going away and coming back.

const open: { close(): Promise<void> }[] = []
const streams: string[] = []
let nc: NatsConnection
let jsm: JetStreamManager

beforeAll(async () => {
  nc = await connectNats()
  jsm = await nc.jetstreamManager()
})
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})
afterAll(async () => {
  for (const name of streams) await jsm?.streams.delete(name).catch(() => {})
  await nc?.close()
})

const fast = { minBackoffMs: 20, maxBackoffMs: 200, heartbeatMs: 200, timeoutMs: 1000 } satisfies Partial<SinkOptions>

async function core(sink: SinkOptions): Promise<EventIngest<any>> {
  const ingest = createEventIngest({ env: {}, sink: { ...fast, ...sink } })
  await ingest.ready()
  open.push(ingest)
  return ingest
}

/** A stream of our own on a subject of our own. */
async function ownStream(manager: JetStreamManager, label: string) {
  const name = uniqueName(label)
  const subject = `${name}.events`
  await manager.streams.add({ name, subjects: [subject] })
  if (manager === jsm) streams.push(name)
  return { name, subject }
}

/** The stream's messages: each one batch, with its `Nats-Msg-Id`. */
async function messages(manager: JetStreamManager, stream: string) {
  const { state } = await manager.streams.info(stream)
  const found: { msgId: string | undefined; ids: string[] }[] = []
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const message = await manager.streams.getMessage(stream, { seq })
    found.push({ msgId: message.header?.get('Nats-Msg-Id'), ids: (message.json() as { id: string }[]).map((e) => e.id) })
  }
  return found
}

describe('NATS JetStream sink', () => {
  it('publishes each batch received over HTTP with Nats-Msg-Id set to its idempotency key', async () => {
    const { name, subject } = await ownStream(jsm, 'http')
    const host = await startHost(h3Host, { env: {}, sink: { ...fast, type: 'nats', url: natsUrl, subject } })
    open.push(host)
    expect((await postEvents(host.url, [makeEvent({ id: 'js-1' }), makeEvent({ id: 'js-2' })])).status).toBe(200)
    await waitFor(async () => (await host.ingest.stats()).forwarded === 2, 5000, 'delivery')
    const found = await messages(jsm, name)
    expect(found).toHaveLength(1)
    expect(found[0]!.ids).toEqual(['js-1', 'js-2'])
    expect(found[0]!.msgId).toMatch(/^[0-9a-f]{32}$/)
    expect((await host.ingest.stats()).forwarding!.sink).toBe(`${natsUrl}#${subject}`)
  })

  it('reads the URL from NATS_URL and the subject from its fragment, and creates the stream when asked', async () => {
    const name = uniqueName('created')
    streams.push(name)
    const subject = `${name}.events`
    const ingest = createEventIngest({ env: { NATS_URL: natsUrl }, sink: { ...fast, type: 'nats', subject, createStream: name } })
    open.push(ingest)
    await ingest.ingest([makeEvent({ id: 'js-created' })])
    await waitFor(async () => (await ingest.stats()).forwarded === 1, 5000, 'delivery')
    expect((await jsm.streams.info(name)).config.subjects).toEqual([subject])
    expect((await messages(jsm, name)).map((m) => m.ids)).toEqual([['js-created']])
  })

  it('lets JetStream drop a redelivered batch whose ack was lost', async () => {
    const { name, subject } = await ownStream(jsm, 'lost')
    const proxy = await startTcpProxy(Number(new URL(natsUrl).port || 4222))
    open.push(proxy)
    // The publish reaches the stream; the ack (a MSG on the reply inbox) is cut.
    proxy.cutReplyTo('js-lost-1', (reply) => reply.toString().startsWith('MSG'))
    const ingest = await core({ type: 'nats', url: `nats://127.0.0.1:${proxy.port}`, subject })
    await ingest.ingest([makeEvent({ id: 'js-lost-1' })])
    await waitFor(async () => (await ingest.stats()).forwarded === 1, 15_000, 'delivery after the lost ack')
    expect(proxy.cuts).toBe(1)
    expect((await ingest.stats()).failures.forward).toBeGreaterThanOrEqual(1)
    expect((await messages(jsm, name)).map((m) => m.ids)).toEqual([['js-lost-1']])
  })

  it('retries while no stream captures the subject, and delivers once one does', async () => {
    const name = uniqueName('late')
    const subject = `${name}.events`
    const ingest = await core({ type: 'nats', url: natsUrl, subject })
    await ingest.ingest([makeEvent({ id: 'js-late' })])
    await waitFor(async () => (await ingest.stats()).failures.forward >= 2, 5000, 'failed attempts')
    expect((await ingest.stats()).forwarding!.backlog).toBe(1)
    expect((await ingest.deadLetters()).length).toBe(0)
    await jsm.streams.add({ name, subjects: [subject] })
    streams.push(name)
    await waitFor(async () => (await ingest.stats()).forwarded === 1, 5000, 'delivery')
    expect((await messages(jsm, name)).map((m) => m.ids)).toEqual([['js-late']])
  })

  it('keeps every batch in the outbox while NATS is down and publishes each once when it is back', async () => {
    const own = await startOwnNats()
    open.push({ close: () => own.dispose() })
    const setup = await connectNats(own.url)
    const ownJsm = await setup.jetstreamManager()
    const { name, subject } = await ownStream(ownJsm, 'down')
    await setup.close()
    const ingest = await core({ type: 'nats', url: own.url, subject })
    await ingest.ingest([makeEvent({ id: 'js-down-0' })])
    await waitFor(async () => (await ingest.stats()).forwarded === 1, 5000, 'the first delivery')
    await own.stop()
    const ids = ['js-down-0']
    for (let i = 1; i <= 5; i++) {
      ids.push(`js-down-${i}`)
      expect((await ingest.ingest([makeEvent({ id: `js-down-${i}` })])).accepted).toBe(1)
    }
    await waitFor(async () => (await ingest.stats()).failures.forward >= 1, 10_000, 'failed attempts while down')
    expect((await ingest.stats()).forwarding!.backlog).toBe(5)
    await own.start()
    await waitFor(async () => (await ingest.stats()).forwarding!.backlog === 0, 30_000, 'the backlog delivered')
    const after = await connectNats(own.url)
    open.push({ close: () => after.close() })
    // The store survived the restart: the first batch and the five, each once, in order.
    const found = await messages(await after.jetstreamManager(), name)
    expect(found.flatMap((m) => m.ids)).toEqual(ids)
    expect((await ingest.stats()).forwarded).toBe(6)
  })

  it('refuses bad options, naming the option', () => {
    expect(() => createEventIngest({ env: {}, sink: { type: 'nats', url: natsUrl } })).toThrow(/sink\.subject is required for a nats sink/)
    expect(() => createEventIngest({ env: {}, sink: { type: 'nats', url: 'redis://x', subject: 'a' } })).toThrow(/sink\.url of a nats sink must be a nats:\/\/ URL/)
    expect(() => createEventIngest({ env: {}, sink: { type: 'nats', subject: 'a.*' } })).toThrow(/sink\.subject must be a subject without spaces or wildcards, got "a\.\*"/)
    expect(() => createEventIngest({ env: {}, sink: { type: 'nats', subject: 'a', createStream: '' } })).toThrow(/sink\.createStream must not be empty/)
  })
})
