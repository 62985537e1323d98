/**
 * The route a team writes instead of mounting event-ingest: the framework's own schema validation
 * (zod for h3, Express and Koa; Fastify's `schema` option), dedupe by id, keeping the accepted
 * events. On memory a `Set` of ids and an array of events; on Redis one pipeline of
 * `SET <id> 1 NX EX 86400` per event, then one `SET` of the accepted events.
 */
import Redis from 'ioredis'
import { z } from 'zod'

const sources = ['storefront', 'admin', 'api', 'bot', 'agent'] as const

/** The v1 envelope as a team would write it with zod. */
export const handEnvelope = z.looseObject({
  id: z.string().min(1).max(128),
  name: z.string().min(1),
  schemaVersion: z.number().int(),
  occurredAt: z.iso.datetime({ offset: true }),
  source: z.enum(sources),
  companyId: z.string().optional(),
  subjectId: z.string().optional(),
  payload: z.record(z.string(), z.unknown()),
})
export const handBatch = z.array(handEnvelope).max(1000)

/** The same envelope as JSON Schema, for Fastify's `schema.body`. */
export const handBatchJsonSchema = {
  type: 'array',
  maxItems: 1000,
  items: {
    type: 'object',
    required: ['id', 'name', 'schemaVersion', 'occurredAt', 'source', 'payload'],
    properties: {
      id: { type: 'string', minLength: 1, maxLength: 128 },
      name: { type: 'string', minLength: 1 },
      schemaVersion: { type: 'integer' },
      occurredAt: { type: 'string', format: 'date-time' },
      source: { enum: sources },
      companyId: { type: 'string' },
      subjectId: { type: 'string' },
      payload: { type: 'object' },
    },
  },
} as const

type Event = { id: string }

/** Where a hand-written route dedupes and keeps what it accepts. */
export interface HandStore {
  /** Keeps the events whose id is new; resolves how many were kept. */
  keep(events: Event[]): Promise<number>
  /** Events kept, and ids refused as seen, since start. */
  readonly counts: { accepted: number; duplicates: number }
  close(): Promise<void>
}

export function memoryHandStore(): HandStore {
  const seen = new Set<string>()
  const kept: Event[] = []
  const counts = { accepted: 0, duplicates: 0 }
  return {
    counts,
    async keep(events) {
      let accepted = 0
      for (const event of events) {
        if (seen.has(event.id)) continue
        seen.add(event.id)
        kept.push(event)
        accepted++
      }
      counts.accepted += accepted
      counts.duplicates += events.length - accepted
      return accepted
    },
    async close() {},
  }
}

export function redisHandStore(url: string, prefix: string): HandStore {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: 5000 })
  let serial = 0
  const counts = { accepted: 0, duplicates: 0 }
  return {
    counts,
    async keep(events) {
      const pipeline = redis.pipeline()
      for (const event of events) pipeline.set(`${prefix}:id:${event.id}`, '1', 'EX', 86400, 'NX')
      const answers = (await pipeline.exec()) ?? []
      const accepted = events.filter((_, i) => answers[i]?.[1] === 'OK')
      if (accepted.length > 0) await redis.set(`${prefix}:batch:${process.pid}:${serial++}`, JSON.stringify(accepted))
      counts.accepted += accepted.length
      counts.duplicates += events.length - accepted.length
      return accepted.length
    },
    async close() {
      redis.disconnect()
    },
  }
}
