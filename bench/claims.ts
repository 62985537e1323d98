/**
 * The memory driver's claim table against a `Map` doing the same job (bench/claim-map.ts), in
 * this process, on the memory store's pattern: each step claims a batch of fresh ids under the
 * batch's value and forgets the claims of the oldest batch, so the number held stays put (what the
 * memory bound does once full). Rounds alternate between the two, each on a fresh structure filled
 * to the size first; the figure is the median time per step over the rounds.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { ClaimTable } from '../src/storage/claim-table'
import { ClaimMap } from './claim-map'
import { spread, type Spread } from './summary'

export interface ClaimsMeasurement {
  /** Claims held while timed. */
  held: number
  batch: number
  steps: number
  table: Spread
  map: Spread
  /** Memory kept by each once filled to `held` (MB of heap and array buffers, between two full GCs; the ids' strings included). */
  tableHeapMB: number
  mapHeapMB: number
}

/** A claim call's handle (`lastEntry`) is what forgetting its batch takes, as the memory store keeps it. */
interface Claims<E> {
  claim(ids: readonly string[], value: string): (string | null)[]
  readonly lastEntry: E
  forget(entry: E, value: string): number
}

// A full GC before each heap reading, so the fill's growth is what stays (the runner is not started with --expose-gc).
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** The JS heap and the array buffers outside it (where the claim table's slots live). */
function kept(): number {
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}

let serial = 0
const freshIds = (count: number) => Array.from({ length: count }, () => `evt_${(serial++).toString(36).padStart(10, '0')}`)

function round<E>(make: () => Claims<E>, held: number, batch: number, steps: number): { usPerStep: number; heapMB: number } {
  gc()
  const heapBefore = kept()
  const claims = make()
  const values: string[] = []
  const entries: E[] = []
  let n = 0
  const value = () => `b:${n++}|${Date.now()}`
  for (let i = 0; i < held / batch; i++) {
    const v = value()
    claims.claim(freshIds(batch), v)
    values.push(v)
    entries.push(claims.lastEntry)
  }
  gc()
  const heapMB = (kept() - heapBefore) / 2 ** 20
  const work = Array.from({ length: steps }, () => freshIds(batch))
  let oldest = 0
  const started = process.hrtime.bigint()
  for (const ids of work) {
    const v = value()
    if (claims.claim(ids, v).some((held) => held !== null)) throw new Error('a fresh id was found held')
    values.push(v)
    entries.push(claims.lastEntry)
    claims.forget(entries[oldest]!, values[oldest]!)
    // Let go of what forgetting took, as the memory store does with the batch it drops.
    entries[oldest] = undefined as never
    oldest++
  }
  const usPerStep = Number(process.hrtime.bigint() - started) / 1000 / steps
  return { usPerStep, heapMB }
}

export function measureClaims(held: number, batch = 50, steps = 20_000, rounds = 5): ClaimsMeasurement {
  const table: number[] = []
  const map: number[] = []
  let tableHeapMB = 0
  let mapHeapMB = 0
  for (let r = 0; r < rounds; r++) {
    const t = round(() => new ClaimTable(), held, batch, steps)
    const m = round(() => new ClaimMap(), held, batch, steps)
    table.push(t.usPerStep)
    map.push(m.usPerStep)
    tableHeapMB = t.heapMB
    mapHeapMB = m.heapMB
  }
  return { held, batch, steps, table: spread(table), map: spread(map), tableHeapMB, mapHeapMB }
}
