import { describe, expect, it } from 'vitest'
import { createEventIngest } from '../../src/index'
import { makeEvent } from '../helpers/fixtures'
import { startSink, waitFor } from '../helpers/sink'

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
