import { createStorage, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import { defineEventLogSuite } from './event-log/suite'

const storages = new Map<string, Storage>()

defineEventLogSuite({
  name: 'memory',
  storage(key) {
    // The memory driver lives in the process: a "restart" reuses the same Storage object.
    if (!storages.has(key)) storages.set(key, createStorage({ driver: memoryDriver() }))
    return storages.get(key)!
  },
})
