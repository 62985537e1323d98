import { defineEventLogSuite } from './event-log/suite'
import { deletePrefix, redisUrl, requireRedis, uniquePrefix } from '../helpers/redis'

const prefix = uniquePrefix('log')

defineEventLogSuite({
  name: 'redis',
  storage: (key) => ({ driver: 'redis', url: redisUrl, base: `${prefix}:${key}` }),
  before: () => requireRedis(),
  after: () => deletePrefix(prefix),
})
