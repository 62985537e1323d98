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
export { createEventIngest, type EventIngest, type EventIngestOptions, type IngestResult } from './ingest'
export { createEventLog, type AppendResult, type EventLog, type EventLogOptions, type EventPage, type EventQuery, type StoredEvent } from './event-log'
export { createHttpHandler, routes, type CorsOptions, type IngestHttpRequest, type IngestHttpResponse } from './http'
export type { BodySource } from './body'
export { resolveStorage, parseStorageString, type RedisStorageOptions, type StorageOption } from './storage'
export { createStatsWindow, type StatsOptions, type StatsSnapshot, type StatsWindow } from './stats'
export { fsDriver, type FsDriverOptions } from './drivers/fs'
export { createForwarder, type DeadLetter, type Forwarder, type ForwardingState, type SinkOptions } from './forwarder'
