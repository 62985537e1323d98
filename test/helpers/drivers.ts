import { defineDriver, type Driver } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'

/**
 * unstorage's memory driver under another `name`, with some methods replaced; each replacement can
 * call through to the plain memory driver it is given. Named 'memory', it keeps event-ingest's
 * in-process claims and the bytes path for batch records; any other name gets the generic
 * read-then-write claims and records written as text.
 */
export function memoryWith(name: string, overrides: (memory: Driver) => Partial<Driver>): Driver {
  const memory = memoryDriver()
  return defineDriver(() => ({ ...memory, name, ...overrides(memory) }))(undefined)
}
