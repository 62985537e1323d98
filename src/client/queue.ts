import type { ClientEnvelope } from './types'

/** One queued event with its serialised form, measured once. */
export interface QueuedEvent {
  event: ClientEnvelope
  json: string
  bytes: number
}

/** The limits a batch must stay under: the client's own, capped by what the server publishes. */
export interface BatchLimits {
  maxBodyBytes: number
  maxEvents: number
  maxEventBytes: number
}

/** The server's defaults, used until (or unless) `GET /events/schema` answers. */
export const defaultLimits: BatchLimits = { maxBodyBytes: 1_048_576, maxEvents: 1000, maxEventBytes: 32_768 }

const encoder = new TextEncoder()

export function queued(event: ClientEnvelope): QueuedEvent {
  const json = JSON.stringify(event)
  return { event, json, bytes: encoder.encode(json).length }
}

/** The body of a batch: a JSON array of the events as measured. */
export function batchBody(items: readonly QueuedEvent[]): string {
  return `[${items.map((item) => item.json).join(',')}]`
}

/** Bytes of a batch body: the brackets, the events, the commas between them. */
export function batchBytes(items: readonly QueuedEvent[]): number {
  return items.reduce((sum, item) => sum + item.bytes, 1 + items.length)
}

/** Whether one event can ever be sent under these limits. */
export function fits(item: QueuedEvent, limits: BatchLimits): boolean {
  return item.bytes <= limits.maxEventBytes && item.bytes + 2 <= limits.maxBodyBytes
}

/**
 * How many events from the front of the queue make the next batch: at most `maxEvents`, and a body
 * of at most `maxBodyBytes`. Events that can never fit are the caller's to remove first.
 */
export function nextBatchSize(items: readonly QueuedEvent[], limits: BatchLimits): number {
  let bytes = 2
  let count = 0
  for (const item of items) {
    if (count === limits.maxEvents) break
    const next = bytes + item.bytes + (count === 0 ? 0 : 1)
    if (next > limits.maxBodyBytes) break
    bytes = next
    count++
  }
  return count
}
