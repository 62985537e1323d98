import type { Storage } from 'unstorage'
import { afterAll, describe, expect, it } from 'vitest'
import { createIdClaims, type IdClaims } from '../../../src/storage/claims'

/**
 * One claim store, as the claim protocol uses it (src/storage/claims.ts, docs/design/dedupe.md
 * T1, T3, T12, T15): set-if-absent, compare-and-set, release only by the holder, expiry. Each
 * backend runs the same cases; `atomic` backends must also hold across processes, which the suite
 * stands in for with several storages opened on the same backend (each its own client or handle).
 */
export interface ClaimStoreSetup {
  name: string
  /** Whether claims and take-overs are atomic across processes. */
  atomic: boolean
  /** Opens a storage on a fresh, empty place of this backend. */
  fresh(): Promise<Storage>
  /** Opens another storage on the same place as `storage` (another process's view of it). */
  again(storage: Storage): Promise<Storage>
  /** Claims expire by themselves after their TTL (Redis); otherwise `expire` removes them. */
  expiresByTtl: boolean
  cleanup(): Promise<void>
}

const BASE = 'events:d'
const WINDOW = 60_000

export function claimStoreSuite(setup: ClaimStoreSetup): void {
  describe(`claim store on ${setup.name}`, () => {
    afterAll(() => setup.cleanup())

    const open = async (): Promise<{ storage: Storage; claims: IdClaims }> => {
      const storage = await setup.fresh()
      return { storage, claims: createIdClaims(storage, BASE) }
    }

    it(`says whether it is atomic (${setup.atomic})`, async () => {
      const { claims } = await open()
      expect(claims.atomic).toBe(setup.atomic)
    })

    it('claims ids not held, answers the holder of those that are, and a repeat within a call with its first place', async () => {
      const { claims } = await open()
      expect(await claims.claim(['a', 'b'], 'one|1', WINDOW)).toEqual([null, null])
      expect(await claims.claim(['b', 'c', 'c'], 'two|2', WINDOW)).toEqual(['one|1', null, 'two|2'])
      expect(await claims.read(['a', 'b', 'c', 'd'])).toEqual(['one|1', 'one|1', 'two|2', null])
    })

    it('keeps ids apart that differ only in case, or in characters keys cannot hold', async () => {
      const { claims } = await open()
      const ids = ['Order-1', 'order-1', 'a/b', 'a:b', 'a?b', 'é', 'e\u0301', '\ud800']
      expect(await claims.claim(ids, 'v|1', WINDOW)).toEqual(ids.map(() => null))
      expect(await claims.claim(ids, 'w|2', WINDOW)).toEqual(ids.map(() => 'v|1'))
    })

    it('releases only ids that still hold the value released', async () => {
      const { claims } = await open()
      await claims.claim(['a', 'b'], 'one|1', WINDOW)
      await claims.overwrite(['b'], 'two|2', WINDOW)
      await claims.release(['a', 'b'], 'one|1')
      expect(await claims.read(['a', 'b'])).toEqual([null, 'two|2'])
    })

    it('replaces an id only while it holds the value expected (compare-and-set)', async () => {
      const { claims } = await open()
      await claims.claim(['a', 'b'], 'old|1', WINDOW)
      expect(await claims.replace(['a', 'b'], ['old|1', 'other|9'], 'new|2', WINDOW)).toEqual([true, false])
      expect(await claims.read(['a', 'b'])).toEqual(['new|2', 'old|1'])
      // Once replaced, the old value never wins again.
      expect(await claims.replace(['a'], ['old|1'], 'third|3', WINDOW)).toEqual([false])
    })

    if (setup.atomic) it('lets exactly one of several processes claim an id at once', async () => {
      const first = await open()
      const views = [first.claims, ...(await Promise.all(Array.from({ length: 5 }, () => setup.again(first.storage)))).map((s) => createIdClaims(s, BASE))]
      for (let round = 0; round < 5; round++) {
        const id = `race-${round}`
        const answers = await Promise.all(views.map((claims, i) => claims.claim([id], `p${i}|${round}`, WINDOW)))
        expect(answers.filter(([value]) => value === null), `round ${round}`).toHaveLength(1)
      }
    })

    if (setup.atomic) it('lets exactly one of several processes take one stale claim over', async () => {
      const first = await open()
      const views = [first.claims, ...(await Promise.all(Array.from({ length: 5 }, () => setup.again(first.storage)))).map((s) => createIdClaims(s, BASE))]
      for (let round = 0; round < 5; round++) {
        const id = `stale-${round}`
        await first.claims.claim([id], `dead|${round}`, WINDOW)
        const won = await Promise.all(views.map((claims, i) => claims.replace([id], [`dead|${round}`], `p${i}|${round}`, WINDOW)))
        expect(won.filter(([w]) => w), `round ${round}`).toHaveLength(1)
        const winner = won.findIndex(([w]) => w)
        expect(await first.claims.read([id])).toEqual([`p${winner}|${round}`])
      }
    })

    it('removes claims whose value is over, and keeps the others', async () => {
      const { claims } = await open()
      if (setup.expiresByTtl) {
        await claims.claim(['short'], 'v|1', 200)
        await claims.claim(['long'], 'v|1', WINDOW)
        await new Promise((resolve) => setTimeout(resolve, 400))
        expect(await claims.read(['short', 'long'])).toEqual([null, 'v|1'])
        return
      }
      await claims.claim(['old-1', 'old-2'], 'b1|100', WINDOW)
      await claims.claim(['new-1'], 'b2|900', WINDOW)
      expect(await claims.expire((value) => Number(value.split('|')[1]) < 500)).toBe(2)
      expect(await claims.read(['old-1', 'old-2', 'new-1'])).toEqual([null, null, 'b2|900'])
      // The ids are free again.
      expect(await claims.claim(['old-1'], 'b3|1000', WINDOW)).toEqual([null])
    })
  })
}
