import type { RetryOptions } from './types'

/** Retry settings with every default filled in. */
export interface ResolvedRetry {
  attempts: number
  minDelayMs: number
  maxDelayMs: number
}

export function resolveRetry(retry: RetryOptions | false | undefined): ResolvedRetry {
  if (retry === false) return { attempts: 1, minDelayMs: 0, maxDelayMs: 0 }
  return { attempts: retry?.attempts ?? 10, minDelayMs: retry?.minDelayMs ?? 500, maxDelayMs: retry?.maxDelayMs ?? 30_000 }
}

/** Network errors are retried; of the statuses, 408, 429 and every 5xx (503 `in_progress` included). */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500
}

/** The wait before attempt `attempt + 1` (attempt 1 is the first): full jitter, unless the server said when (`Retry-After`). */
export function retryDelay(retry: ResolvedRetry, attempt: number, retryAfter: string | null, now = Date.now()): number {
  const after = parseRetryAfter(retryAfter, now)
  if (after !== undefined) return after
  return Math.random() * Math.min(retry.maxDelayMs, retry.minDelayMs * 2 ** (attempt - 1))
}

/** `Retry-After` as milliseconds from now: delay-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000
  const date = Date.parse(value)
  return date === date ? Math.max(0, date - now) : undefined
}
