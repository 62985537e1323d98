import { z } from 'zod'
import { eventSources, type EventDefinitions, type EventSource, type SourcePolicy } from './definitions'
import type { Limits } from './limits'
import { CLOUDEVENTS_BATCH_CONTENT_TYPE, CLOUDEVENTS_CONTENT_TYPE } from './cloudevents'
import { publishedRules, type PublishedRedaction, type RedactionPlan } from './redact'

/** What `GET /events/schema` publishes. */
export interface ModelDescription {
  /** The newest envelope version. */
  schemaVersion: number
  supportedVersions: readonly number[]
  sources: readonly EventSource[]
  sourcePolicy: 'reject' | 'accept'
  events: {
    name: string
    sources: readonly EventSource[]
    description?: string
    payloadSchema: Record<string, unknown>
    /** PII redaction applied to the payload before storage, in order (absent: none). Never the secret. */
    redact?: PublishedRedaction[]
  }[]
  /** JSON Schema (draft 2020-12) of the envelope. */
  envelopeSchema: Record<string, unknown>
  limits: Limits
  /**
   * The content types `POST /events/ingest` takes: a JSON array of envelopes as `application/json`
   * (or any other `application/*+json`, or `text/plain` for beacons), and CloudEvents in structured
   * (`application/cloudevents+json`) and batched (`application/cloudevents-batch+json`) modes.
   * Always set by `describe()`; absent from exports saved before it was published.
   */
  contentTypes?: readonly string[]
}

/** The content types of `POST /events/ingest`, as {@link ModelDescription.contentTypes} lists them. */
export const ingestContentTypes: readonly string[] = Object.freeze(['application/json', 'text/plain', CLOUDEVENTS_CONTENT_TYPE, CLOUDEVENTS_BATCH_CONTENT_TYPE])

/** What a model hands in to be described: its versions, definitions, policy, envelope and limits. */
export interface DescribedModel {
  readonly schemaVersion: number
  readonly supportedVersions: readonly number[]
  readonly events: Readonly<EventDefinitions>
  readonly sourcePolicy: SourcePolicy
  readonly envelope: z.ZodType
  readonly limits: Readonly<Limits>
  readonly redaction?: RedactionPlan
}

const anyObjectSchema = { type: 'object', additionalProperties: {} }

/** Builds the published description of a model, JSON Schema included. */
export function describeModel(model: DescribedModel): ModelDescription {
  return {
    schemaVersion: model.schemaVersion,
    supportedVersions: model.supportedVersions,
    sources: eventSources,
    sourcePolicy: model.sourcePolicy,
    events: Object.entries(model.events)
      .map(([name, definition]) => ({
        name,
        sources: definition.sources,
        ...(definition.description ? { description: definition.description } : {}),
        payloadSchema: definition.payload
          ? (z.toJSONSchema(definition.payload, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>)
          : anyObjectSchema,
        ...redactOf(model.redaction, name),
      })),
    envelopeSchema: z.toJSONSchema(model.envelope, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>,
    limits: { ...model.limits },
    contentTypes: ingestContentTypes,
  }
}

function redactOf(plan: RedactionPlan | undefined, name: string): { redact?: PublishedRedaction[] } {
  const rules = publishedRules(plan, name)
  return rules ? { redact: rules } : {}
}
