/**
 * Runs `fn` over `items`, at most `concurrency` at a time. After a failure no item starts; it
 * rejects with the first failure once the ones under way have ended.
 */
export async function eachLimited<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let failure: { error: unknown } | undefined
  const worker = async () => {
    while (!failure && next < items.length) {
      try {
        await fn(items[next++]!)
      } catch (error) {
        failure ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
  if (failure) throw failure.error
}

/** Resolves after the event loop has had a turn (I/O and timers included). */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
