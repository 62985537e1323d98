import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { allHosts } from '../helpers/hosts'
import { getJson, postEvents } from '../helpers/http'
import { makeEvent } from '../helpers/fixtures'
import { startHost, type RunningHost } from '../helpers/servers'
import { startSink, waitFor } from '../helpers/sink'

const ADMIN = 'admin-secret'
const auth = { authorization: `Bearer ${ADMIN}` }

async function requeue(url: string, body: string | undefined, headers: Record<string, string> = {}) {
  const response = await fetch(`${url}/admin/events/requeue`, {
    method: 'POST',
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body,
  })
  const text = await response.text()
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined }
}

for (const factory of allHosts) {
  describe(`${factory.name}: dead letters over HTTP`, () => {
    let sink: Awaited<ReturnType<typeof startSink>>
    let host: RunningHost
    let refuse = true
    beforeAll(async () => {
      sink = await startSink(() => (refuse ? { status: 422, body: '{"code":"nope"}' } : { status: 200 }))
      host = await startHost(factory, { adminToken: ADMIN, sink: { url: sink.url, minBackoffMs: 20, maxBackoffMs: 100 } })
    })
    afterAll(async () => {
      await host.close()
      await sink.close()
    })

    it('lists dead letters and requeues the ones named, behind the admin token', async () => {
      expect((await postEvents(host.url, [makeEvent({ id: 'dl-1' })])).status).toBe(200)
      expect((await postEvents(host.url, [makeEvent({ id: 'dl-2' })])).status).toBe(200)
      await waitFor(async () => (await getJson(`${host.url}/admin/events/dead-letters`, auth)).body.deadLetters.length === 2, 10_000, 'two dead letters')
      const listed = await getJson(`${host.url}/admin/events/dead-letters`, auth)
      expect(listed.status).toBe(200)
      expect(listed.body.deadLetters).toEqual([
        expect.objectContaining({ status: 422, events: 1, body: '{"code":"nope"}' }),
        expect.objectContaining({ status: 422, events: 1, body: '{"code":"nope"}' }),
      ])
      refuse = false
      const first = listed.body.deadLetters[0].id as string
      const answer = await requeue(host.url, JSON.stringify({ ids: [first, 'no-such-letter'] }), auth)
      expect(answer).toMatchObject({ status: 200, body: { requeued: 1 } })
      await waitFor(() => sink.stored.length === 1, 5000, 'the requeued batch delivered')
      const left = await getJson(`${host.url}/admin/events/dead-letters`, auth)
      expect(left.body.deadLetters.map((l: { id: string }) => l.id)).toEqual([listed.body.deadLetters[1].id])
      // No body: every dead letter.
      expect(await requeue(host.url, undefined, auth)).toMatchObject({ status: 200, body: { requeued: 1 } })
      await waitFor(() => sink.stored.length === 2, 5000, 'the second batch delivered')
      expect(sink.storedIds().sort()).toEqual(['dl-1', 'dl-2'])
      expect((await getJson(`${host.url}/admin/events/dead-letters`, auth)).body.deadLetters).toEqual([])
    })

    it('refuses both routes without the admin token, before reading anything', async () => {
      const listed = await getJson(`${host.url}/admin/events/dead-letters`)
      expect(listed.status).toBe(401)
      expect(listed.body.code).toBe('admin_token_missing')
      const wrong = await requeue(host.url, '{}', { authorization: 'Bearer nope' })
      expect(wrong.status).toBe(401)
      expect(wrong.body.code).toBe('admin_token_invalid')
    })

    it('refuses a requeue body that is not {"ids": [strings]}, naming the field', async () => {
      const array = await requeue(host.url, '["a"]', auth)
      expect(array.status).toBe(400)
      expect(array.body.code).toBe('invalid_request')
      const numbers = await requeue(host.url, '{"ids":[1,2]}', auth)
      expect(numbers.status).toBe(400)
      expect(numbers.body).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/^ids: /) })
      const broken = await requeue(host.url, '{"ids":', auth)
      expect(broken.status).toBe(400)
      expect(broken.body.code).toBe('invalid_json')
    })

    it('reads a gzip requeue body as it reads an ingest body', async () => {
      const response = await fetch(`${host.url}/admin/events/requeue`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', ...auth },
        body: gzipSync(JSON.stringify({ ids: ['no-such-letter'] })),
      })
      expect(response.status).toBe(200)
      expect(await response.json()).toEqual({ requeued: 0 })
    })

    it('answers 405 naming the method allowed', async () => {
      const response = await getJson(`${host.url}/admin/events/requeue`, auth)
      expect(response.status).toBe(405)
      expect(response.headers.get('allow')).toBe('POST')
    })
  })
}

describe('dead-letter routes without admin access configured', () => {
  it('refuse with 403 admin_disabled', async () => {
    const host = await startHost(allHosts[0]!, {})
    try {
      expect((await getJson(`${host.url}/admin/events/dead-letters`)).body.code).toBe('admin_disabled')
      expect((await requeue(host.url, '{}')).body.code).toBe('admin_disabled')
    } finally {
      await host.close()
    }
  })
})
