import { z } from 'zod'
import type { EventModel, EventSource } from './model'
import { eventSources } from './model'
import type { Limits } from './limits'

/** What `GET /events/schema` publishes. */
export interface ModelDescription {
  /** The newest envelope version. */
  schemaVersion: number
  supportedVersions: readonly number[]
  sources: readonly EventSource[]
  sourcePolicy: 'reject' | 'accept'
  events: { name: string; sources: readonly EventSource[]; description?: string; payloadSchema: Record<string, unknown> }[]
  /** JSON Schema (draft 2020-12) of the envelope. */
  envelopeSchema: Record<string, unknown>
  limits: Limits
}

const anyObjectSchema = { type: 'object', additionalProperties: {} }

/** Builds the published description of a model, JSON Schema included. */
export function describeModel(model: EventModel<any>): ModelDescription {
  return {
    schemaVersion: model.schemaVersion,
    supportedVersions: model.supportedVersions,
    sources: eventSources,
    sourcePolicy: model.sourcePolicy,
    events: Object.entries(model.events as Record<string, { sources: readonly EventSource[]; payload?: z.ZodType; description?: string }>)
      .map(([name, definition]) => ({
        name,
        sources: definition.sources,
        ...(definition.description ? { description: definition.description } : {}),
        payloadSchema: definition.payload
          ? (z.toJSONSchema(definition.payload, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>)
          : anyObjectSchema,
      })),
    envelopeSchema: z.toJSONSchema(model.envelope, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>,
    limits: { ...model.limits },
  }
}
