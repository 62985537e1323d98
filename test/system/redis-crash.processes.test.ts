/**
 * An instance killed (kill -9) on Redis with many batches in flight. Redis stores a batch in one
 * step (one script writes its dedupe claims, record and outbox entry together), so a batch is
 * stored whole or not at all whenever the instance dies: no claim is left without its record for
 * a retry to wait on (test/helpers/killed-instance-suite.ts says what is checked).
 *
 * Child processes are event-ingest instances behind real HTTP servers on one key prefix of the
 * shared Redis (REDIS_URL), removed afterwards.
 */
import { fileURLToPath } from 'node:url'
import { expect } from 'vitest'
import { createEventIngest } from '../../src/index'
import { defineKilledInstanceSuite } from '../helpers/killed-instance-suite'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'

const prefix = uniquePrefix('crash')

defineKilledInstanceSuite({
  label: 'Redis',
  childScript: fileURLToPath(new URL('../helpers/redis-ingest-process.ts', import.meta.url)),
  childArgs: [redisUrl, prefix],
  async open() {
    await requireRedis()
    const observer = createEventIngest({ env: {}, storage: { driver: 'redis', url: redisUrl, base: prefix }, instanceId: 'crash_observer' })
    await observer.ready()
    return observer
  },
  cleanup: () => deletePrefix(prefix),
  async checkStored(observer, counts) {
    // The batch script counts what it stores: the accepted total is exact, though the doomed
    // instance's own buckets died with it unflushed.
    expect(observer.log!.countsAccepted).toBe(true)
    expect((await observer.stats()).totals.accepted).toBe(counts.size)
  },
})
