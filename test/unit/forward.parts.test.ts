import { describe, expect, it } from 'vitest'
import { Leases } from '../../src/forward/leases'
import { OutboxQueue, type Pending } from '../../src/forward/queue'
import type { ClaimStore } from '../../src/storage/claims'
import { leaseValue, outboxId, outboxKey, outboxKeyOf, outboxOwner, parseLease, parseSeenKey, seenKey } from '../../src/storage/layout'

describe('lease values', () => {
  it('round-trips the holder and the end of a lease', () => {
    expect(parseLease(leaseValue('web_1', 1_800_000_000_000))).toEqual({ owner: 'web_1', until: 1_800_000_000_000 })
  })

  it.each(['web_1', 'web_1|', 'web_1|soon', 'web_1|-5', 'web_1|1e12', 'web_1|12.5'])('reads %j as a lease that holds no time', (value) => {
    const { until } = parseLease(value)
    expect(until).toBeNaN()
    // NaN compares false with every time: such a lease counts as expired and may be taken over.
    expect(until > 0).toBe(false)
  })
})

describe('outbox keys', () => {
  it('name their outbox id and first owner', () => {
    const batch = 'events:b:2026120212:00mien7g0-web_1-k3000001'
    const key = outboxKey('events', batch)
    expect(key).toBe('events:o:web_1:00mien7g0-web_1-k3000001')
    expect(outboxId('events', key)).toBe('web_1:00mien7g0-web_1-k3000001')
    expect(outboxKeyOf('events', outboxId('events', key))).toBe(key)
    expect(outboxOwner('events', key)).toBe('web_1')
  })

  it('registry keys name their instance, under their prefix only', () => {
    expect(parseSeenKey('stats', seenKey('stats', 'web_1'))).toBe('web_1')
    expect(parseSeenKey('stats', 'stats:seen')).toBeNull()
    expect(parseSeenKey('stats', 'other:seen:web_1')).toBeNull()
  })
})

describe('outbox queue', () => {
  const entry = (receivedAt: number, instance: string, seq: number): Pending => {
    const batch = `events:b:2026120212:${receivedAt.toString(36).padStart(9, '0')}-${instance}-t${seq.toString(36).padStart(6, '0')}`
    return { key: outboxKey('events', batch), batch, events: 1, receivedAt }
  }
  const order = (queue: OutboxQueue) => queue.candidates(0, 100).map((p) => p.receivedAt)

  it('keeps acceptance order whatever the order of insertion, across instances', () => {
    const queue = new OutboxQueue()
    for (const pending of [entry(300, 'b', 1), entry(100, 'a', 1), entry(200, 'b', 0), entry(400, 'a', 2), entry(150, 'c', 9)]) queue.insert(pending)
    expect(order(queue)).toEqual([100, 150, 200, 300, 400])
  })

  it('holds each key once', () => {
    const queue = new OutboxQueue()
    const first = entry(100, 'a', 1)
    queue.insert(first)
    queue.insert({ ...first, events: 9 })
    expect(queue.length).toBe(1)
    expect(queue.find(first.key)?.events).toBe(1)
  })

  it('passes over entries not to be looked at yet, and counts what it holds', () => {
    const queue = new OutboxQueue()
    const [a, b, c] = [entry(100, 'a', 1), entry(200, 'a', 2), entry(300, 'a', 3)]
    for (const pending of [a, b, c]) queue.insert(pending)
    a.notBefore = 1000
    expect(queue.candidates(999, 100).map((p) => p.receivedAt)).toEqual([200, 300])
    expect(queue.candidates(1000, 100).map((p) => p.receivedAt)).toEqual([100, 200, 300])
    expect(queue.candidates(0, 1).map((p) => p.receivedAt)).toEqual([200])
    expect(queue.soonest()).toBe(0)
    expect(queue.totals()).toEqual({ events: 3, oldest: 100 })
  })

  it('tells a waiter whether its batch was delivered when it leaves', async () => {
    const queue = new OutboxQueue()
    const [a, b] = [entry(100, 'a', 1), entry(200, 'a', 2)]
    queue.insert(a)
    queue.insert(b)
    const waitA = queue.waitFor(a.key)
    const waitB = queue.waitFor(b.key)
    queue.drop(b, true)
    queue.drop(a)
    expect(await waitA).toBe(false)
    expect(await waitB).toBe(true)
    expect(queue.length).toBe(0)
    expect(queue.has(a.key)).toBe(false)
  })
})

describe('leases', () => {
  /** A claim store over a Map, with a hook that runs between a lease's read and its take-over. */
  function fakeClaims(held: Map<string, string>, beforeReplace = () => {}): ClaimStore {
    return {
      atomic: true,
      async claim(keys, value) {
        return keys.map((key) => {
          const found = held.get(key)
          if (found !== undefined) return found
          held.set(key, value)
          return null
        })
      },
      async overwrite() {},
      async replace(keys, expected, value) {
        beforeReplace()
        return keys.map((key, i) => {
          if (held.get(key) !== expected[i]) return false
          held.set(key, value)
          return true
        })
      },
      async release(keys, value) {
        for (const key of keys) if (held.get(key) === value) held.delete(key)
      },
      async read(keys) {
        return keys.map((key) => held.get(key) ?? null)
      },
      expire: async () => 0,
    }
  }
  const io = <T>(step: Promise<T>) => step
  const pending = (): Pending => ({ key: 'events:o:web_1:00mien7g0-web_1-t000001', batch: 'events:b:x', events: 1, receivedAt: 0 })
  const KEY = 'events:l:web_1:00mien7g0-web_1-t000001'

  it('takes a free lease for this instance and releases it', async () => {
    const held = new Map<string, string>()
    const leases = new Leases(fakeClaims(held), 'events', 'me', 1000, io)
    const entry = pending()
    const taken = await leases.take(entry)
    expect(taken.held).toBe(true)
    expect(parseLease(held.get(KEY)!).owner).toBe('me')
    expect(entry.lease).toBe(held.get(KEY))
    await leases.release(entry)
    expect(held.size).toBe(0)
    expect(entry.lease).toBeUndefined()
  })

  it("leaves another instance's live lease alone, to be looked at again when it ends (at most 5 s on)", async () => {
    const soon = Date.now() + 800
    const held = new Map([[KEY, leaseValue('other', soon)]])
    const leases = new Leases(fakeClaims(held), 'events', 'me', 1000, io)
    expect(await leases.take(pending())).toEqual({ held: false, retryAt: soon })
    held.set(KEY, leaseValue('other', Date.now() + 60_000))
    const far = await leases.take(pending())
    expect(far.held).toBe(false)
    expect((far as { retryAt: number }).retryAt).toBeLessThanOrEqual(Date.now() + 5000)
    expect(parseLease(held.get(KEY)!).owner).toBe('other')
  })

  it('takes an expired lease over by compare-and-set, and leaves it to the instance that took it first', async () => {
    const held = new Map([[KEY, leaseValue('dead', Date.now() - 1)]])
    const won = await new Leases(fakeClaims(held), 'events', 'me', 1000, io).take(pending())
    expect(won.held).toBe(true)
    expect(parseLease(held.get(KEY)!).owner).toBe('me')

    held.set(KEY, leaseValue('dead', Date.now() - 1))
    // Another instance takes it over between this one's read and its compare-and-set.
    const racing = new Leases(fakeClaims(held, () => held.set(KEY, leaseValue('rival', Date.now() + 1000))), 'events', 'me', 1000, io)
    const lost = await racing.take(pending())
    expect(lost.held).toBe(false)
    expect(parseLease(held.get(KEY)!).owner).toBe('rival')
  })

  it('renews only the leases that still hold what this instance wrote', async () => {
    const held = new Map<string, string>()
    const leases = new Leases(fakeClaims(held), 'events', 'me', 1000, io)
    const entry = pending()
    await leases.take(entry)
    expect(await leases.renew([entry])).toBe(true)
    held.set(KEY, leaseValue('other', Date.now() + 1000))
    expect(await leases.renew([entry])).toBe(false)
    expect(parseLease(held.get(KEY)!).owner).toBe('other')
  })
})
