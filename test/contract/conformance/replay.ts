import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { getJson, postEvents } from '../../helpers/http'
import { makeEvent } from '../../helpers/fixtures'
import { startHost, type HostFactory, type RunningHost } from '../../helpers/servers'
import { startSink, waitFor } from '../../helpers/sink'

const ADMIN = 'admin-secret'
const auth = { authorization: `Bearer ${ADMIN}` }

async function post(url: string, path: string, body: unknown, headers: Record<string, string> = auth) {
  const response = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  const text = await response.text()
  return { status: response.status, body: text ? JSON.parse(text) : undefined }
}

/** The replay routes over real HTTP: start, progress, keys, cancel and their errors. */
export function defineReplaySuite(factory: HostFactory, label: string) {
  describe(`${label}: replay`, () => {
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

