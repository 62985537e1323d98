export { IngestError, errorStatus, type IngestErrorCode } from './errors'
export { defaultLimits, resolveLimits, type Limits } from './limits'
export {
  SCHEMA_VERSION,
  SUPPORTED_SCHEMA_VERSIONS,
  canonicalEvents,
  createEnvelopeSchema,
  createEventModel,
  defineEvents,
  eventSources,
  type CanonicalEvents,
  type EventDefinition,
  type EventDefinitions,
  type EventEnvelope,
  type EventModel,
  type EventModelOptions,
  type EventOf,
  type EventSource,
  type InferEvent,
  type InferPayload,
  type MergeEvents,
  type PayloadOf,
  type SourcePolicy,
} from './model'
export type { BatchHints, BatchResult, EventResult, FieldError, RejectedEvent } from './validate'
export type { ModelDescription } from './schema'
export { parseBatchBytes, type ParsedBody } from './json'
