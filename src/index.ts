export { IngestError, errorStatus, type IngestErrorCode } from './errors'
export { defaultLimits, resolveLimits, type Limits } from './limits'
export {
  SCHEMA_VERSION,
  SUPPORTED_SCHEMA_VERSIONS,
  canonicalEvents,
  defineEvents,
  eventSources,
  type CanonicalEvents,
  type EventDefinition,
  type EventDefinitions,
  type EventSource,
  type SourcePolicy,
} from './definitions'
export {
  createEnvelopeSchema,
  createEventModel,
  type EventEnvelope,
  type EventModel,
  type EventModelOptions,
  type EventOf,
  type InferEvent,
  type InferPayload,
  type MergeEvents,
  type PayloadOf,
} from './model'
export type { BatchHints, BatchResult, EventResult, FieldError, RejectedEvent } from './validate'
export type { ModelDescription } from './schema'
export { parseBatchBytes, type ParsedBody } from './json'
export { createEventIngest, type EventIngestOptions } from './ingest'
export { resolveOptions, type ResolvedOptions } from './options'
export type { CorsOptions, EventIngest, IngestHttpRequest, IngestHttpResponse, IngestResult, RefusalDrain } from './types'
export type { AppendResult, EventLog, EventPage, EventQuery, OutboxEntry, PruneOptions, RawBatch, StoredEvent } from './event-log'
export { routes, type HttpOptions } from './http'
export type { BodySource } from './body'
export { DEFAULT_MEMORY_MAX_BYTES, DEFAULT_MEMORY_MAX_EVENTS, parseStorageString, type MemoryStorageOptions, type RedisStorageOptions, type StorageOption } from './storage'
export type { StatsSnapshot } from './stats'
export { fsDriver, removeStaleTempFiles, type FsDriverInstance, type FsDriverOptions } from './drivers/fs'
export type { DeadLetter, ForwardingState, RefusedEvent, SinkOptions } from './forwarder'
