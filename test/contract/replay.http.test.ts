import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEventIngest } from '../../src/index'
import { allHosts } from '../helpers/hosts'
import { getJson, postEvents } from '../helpers/http'
import { makeEvent } from '../helpers/fixtures'
import { startHost, type RunningHost } from '../helpers/servers'
import { startSink, waitFor } from '../helpers/sink'

const ADMIN = 'admin-secret'
const auth = { authorization: `Bearer ${ADMIN}` }

async function post(url: string, path: string, body: unknown, headers: Record<string, string> = auth) {
  const response = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  const text = await response.text()
  return { status: response.status, body: text ? JSON.parse(text) : undefined }
}

for (const factory of allHosts) {
  describe(`${factory.name}: replay over HTTP`, () => {
    let sink: Awaited<ReturnType<typeof startSink>>
    let host: RunningHost
    let bare: RunningHost
    beforeAll(async () => {
      sink = await startSink()
      host = await startHost(factory, { adminToken: ADMIN, sink: { url: sink.url, minBackoffMs: 20, maxBackoffMs: 100 } })
      bare = await startHost(factory, { adminToken: ADMIN })
    })
    afterAll(async () => {
      await host.close()
      await bare.close()
      await sink.close()
    })

    it('replays the stored events of a name through the outbox, with the same keys each time', async () => {
      const since = new Date(Date.now() - 1000).toISOString()
      expect((await postEvents(host.url, [makeEvent({ id: 'rp-1' }), makeEvent({ id: 'rp-2', name: 'OrderCreated', source: 'api', payload: { orderId: 'o1', total: 1, currency: 'EUR' } })])).status).toBe(200)
      expect((await postEvents(host.url, [makeEvent({ id: 'rp-3' })])).status).toBe(200)
      await waitFor(() => sink.storedIds().length === 3, 5000, 'the first deliveries')
      const firstKeys = sink.requests.map((r) => r.key)
      const before = sink.requests.length
      const until = new Date(Date.now() + 1000).toISOString()
      const started = await post(host.url, '/admin/events/replays', { since, until, name: 'ProductViewed' })
      expect(started.status).toBe(202)
      expect(started.body.replay).toMatchObject({ id: expect.any(String), state: 'running', since, until, name: 'ProductViewed' })
      const id = started.body.replay.id as string
      const progress = async () => (await getJson(`${host.url}/admin/events/replays`, auth)).body.replays.find((r: { id: string }) => r.id === id)
      await waitFor(async () => (await progress()).state === 'done', 5000, 'the replay done')
      expect(await progress()).toMatchObject({ batches: { queued: 2, delivered: 2, failed: 0 }, events: { queued: 2, delivered: 2, failed: 0 } })
      const replayed = sink.requests.slice(before)
      expect(replayed.flatMap((r) => r.events.map((e) => e.id))).toEqual(['rp-1', 'rp-3'])
      const replayKeys = replayed.map((r) => r.key)
      for (const key of replayKeys) expect(firstKeys).not.toContain(key)

      const again = await post(host.url, '/admin/events/replays', { since, until, name: 'ProductViewed' })
      expect(again.status).toBe(202)
      await waitFor(() => sink.requests.length === before + 4, 5000, 'the second replay delivered')
      expect(sink.requests.slice(before + 2).map((r) => r.key)).toEqual(replayKeys)
    })

    it('refuses a bad replay naming the field, without a sink with 409 no_sink, and without the admin token', async () => {
      const now = Date.now()
      const since = new Date(now).toISOString()
      const until = new Date(now - 1000).toISOString()
      const reversed = await post(host.url, '/admin/events/replays', { since, until })
      expect(reversed.status).toBe(400)
      expect(reversed.body).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/^since: must be before until/) })
      const unknown = await post(host.url, '/admin/events/replays', { since: until, until: since, topic: 'x' })
      expect(unknown).toMatchObject({ status: 400, body: { code: 'invalid_request', message: expect.stringMatching(/^topic: unknown field/) } })
      const missing = await post(host.url, '/admin/events/replays', { since: until })
      expect(missing).toMatchObject({ status: 400, body: { message: expect.stringMatching(/^until: required/) } })
      const badTime = await post(host.url, '/admin/events/replays', { since: 'yesterday', until })
      expect(badTime).toMatchObject({ status: 400, body: { message: expect.stringMatching(/^since: expected an ISO 8601 timestamp/) } })
      const noSink = await post(bare.url, '/admin/events/replays', { since: until, until: since })
      expect(noSink).toMatchObject({ status: 409, body: { code: 'no_sink' } })
      const open = await post(host.url, '/admin/events/replays', { since: until, until: since }, {})
      expect(open).toMatchObject({ status: 401, body: { code: 'admin_token_missing' } })
      expect((await getJson(`${host.url}/admin/events/replays`)).status).toBe(401)
      const noId = await post(host.url, '/admin/events/replays/cancel', {})
      expect(noId).toMatchObject({ status: 400, body: { code: 'invalid_request', message: expect.stringMatching(/^id: /) } })
      const unknownId = await post(host.url, '/admin/events/replays/cancel', { id: 'no-such-replay' })
      expect(unknownId).toMatchObject({ status: 404, body: { code: 'not_found' } })
    })
  })
}

describe('replay limits', () => {
  it('runs at most sink.maxReplays replays at once (409 too_many_replays past it) and frees a place on cancel', async () => {
    const sink = await startSink(() => ({ status: 503 }))
    const ingest = createEventIngest({ env: {}, sink: { url: sink.url, maxReplays: 2, minBackoffMs: 50, maxBackoffMs: 100 } })
    try {
      await ingest.ingest([makeEvent()])
      const range = { since: Date.now() - 60_000, until: Date.now() + 60_000 }
      const first = await ingest.replay(range)
      await ingest.replay(range)
      await expect(ingest.replay(range)).rejects.toMatchObject({ code: 'too_many_replays', status: 409, message: expect.stringContaining('sink.maxReplays') })
      const cancelled = await ingest.cancelReplay(first.id)
      expect(cancelled.state).toBe('cancelled')
      const third = await ingest.replay(range)
      expect(third.state).toBe('running')
      expect((await ingest.replays()).map((r) => r.state)).toEqual(['running', 'running', 'cancelled'])
    } finally {
      await ingest.close()
      await sink.close()
    }
  })

  it('keeps at most sink.maxReplayInFlight replay batches unsettled, then goes on as they are delivered', async () => {
    let open = false
    const sink = await startSink(() => (open ? { status: 200 } : { status: 503 }))
    const ingest = createEventIngest({ env: {}, sink: { url: sink.url, maxReplayInFlight: 2, minBackoffMs: 20, maxBackoffMs: 50 } })
    try {
      for (let i = 0; i < 5; i++) await ingest.ingest([makeEvent({ id: `lim-${i}` })])
      const replay = await ingest.replay({ since: Date.now() - 60_000, until: Date.now() + 60_000 })
      await waitFor(async () => (await ingest.replays())[0]!.batches.queued === 2, 5000, 'two batches queued')
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect((await ingest.replays())[0]!.batches).toEqual({ queued: 2, delivered: 0, failed: 0 })
      open = true
      await waitFor(async () => (await ingest.replays())[0]!.state === 'done', 10_000, 'the replay done')
      const done = (await ingest.replays()).find((r) => r.id === replay.id)!
      expect(done.batches).toEqual({ queued: 5, delivered: 5, failed: 0 })
      expect(sink.storedIds().filter((id) => id.startsWith('lim-')).length).toBe(10)
    } finally {
      await ingest.close()
      await sink.close()
    }
  })

  it('refuses a sink.maxReplays or sink.maxReplayInFlight that is not a positive integer, naming it', () => {
    expect(() => createEventIngest({ env: {}, sink: { url: 'http://127.0.0.1:1/sink', maxReplays: 0 } })).toThrow(/sink\.maxReplays/)
    expect(() => createEventIngest({ env: {}, sink: { url: 'http://127.0.0.1:1/sink', maxReplayInFlight: 1.5 } })).toThrow(/sink\.maxReplayInFlight/)
  })
})

describe('replay across a restart (fs storage)', () => {
  it('delivers the replay batches a closed process left in the outbox, under the same keys, after it starts again', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const dir = await mkdtemp(join(tmpdir(), 'replay-restart-'))
    let up = false
    const sink = await startSink(() => (up ? { status: 200 } : { status: 503 }))
    const options = { env: {}, storage: `fs:${dir}`, instanceId: 'replay_a', sink: { url: sink.url, minBackoffMs: 20, maxBackoffMs: 50 } } as const
    try {
      const first = createEventIngest(options)
      await first.ingest([makeEvent({ id: 'rs-1' })])
      await first.replay({ since: Date.now() - 60_000, until: Date.now() + 60_000 })
      await waitFor(async () => (await first.replays())[0]!.batches.queued === 1, 5000, 'the replay batch queued')
      await waitFor(() => sink.requests.length >= 1, 5000, 'an attempt')
      await first.close()
      up = true
      const second = createEventIngest(options)
      try {
        await waitFor(() => sink.stored.length === 2, 10_000, 'both batches delivered after the restart')
        expect(sink.storedIds()).toEqual(['rs-1', 'rs-1'])
        const [original, replayed] = sink.stored.map((r) => r.key)
        expect(replayed).not.toBe(original)
        // The scan and its progress lived in the first process only.
        expect(await second.replays()).toEqual([])
        // The same range replayed again, by the same instance id after the restart: the same key.
        await second.replay({ since: Date.now() - 60_000, until: Date.now() + 60_000 })
        await waitFor(() => sink.stored.length === 3, 5000, 'the second replay delivered')
        expect(sink.stored[2]!.key).toBe(replayed)
      } finally {
        await second.close()
      }
    } finally {
      await sink.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
