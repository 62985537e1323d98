/**
 * Races a storage promise against a timeout, so no request waits on storage without bound. The
 * operation itself is not cancelled (storage drivers cannot be); callers that must know when it
 * really ends keep their own handle on it.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`[event-ingest] storage ${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
