/**
 * Races a storage promise against a timeout, so no request waits on storage without bound. The
 * operation itself is not cancelled (storage drivers cannot be); callers that must know when it
 * really ends keep their own handle on it.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  // One promise and one timer per call: this wraps every storage step of every request.
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`[event-ingest] storage ${what} timed out after ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}
