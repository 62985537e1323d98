export { IngestError, errorStatus, type IngestErrorCode } from './base/errors'
export { defaultLimits, resolveLimits, type Limits } from './model/limits'
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
} from './model/definitions'
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
} from './model/model'
export type { BatchMapping, BatchResult, EventResult, FieldError, RejectedEvent } from './model/validate'
export { CLOUDEVENTS_BATCH_CONTENT_TYPE, CLOUDEVENTS_CONTENT_TYPE, cloudEventsMapping, cloudEventToEnvelope, defaultCloudEventsSource, envelopeToCloudEvent } from './model/cloudevents'
export type { CloudEventsSourceMap, MappedCloudEvent } from './model/cloudevents'
export type { BatchHints, ParsedBody, ReceivedBody } from './model/received'
export type { ModelDescription } from './model/schema'
export { createRedactor, type PublishedRedaction, type RedactedBatch, type RedactionAction, type RedactionCounts, type RedactionMap, type RedactionPlan, type RedactionRule, type Redactor } from './model/redact'
export { parseBatchBytes } from './model/json'
export { createEventIngest, type EventIngestOptions } from './core/ingest'
export { resolveOptions, type ResolvedOptions } from './core/options'
export type { CorsOptions, EventIngest, IngestContext, IngestFormat, IngestHttpRequest, IngestHttpResponse, IngestResult, RefusalDrain } from './core/types'
export type { AppendResult, EventLog, EventPage, EventQuery, OutboxEntry, PruneOptions, RawBatch, StoredEvent } from './log/event-log'
export type { AtomicBatch, AtomicBatchStore, AtomicResult } from './storage/atomic'
export { claimKey } from './storage/layout'
export { routes, type HttpOptions } from './http/handler'
export type { PublishableKey } from './http/keys'
export type { KeyScope } from './core/key-sources'
export type { BodySource } from './http/body'
export { DEFAULT_MEMORY_MAX_BYTES, DEFAULT_MEMORY_MAX_EVENTS, parseStorageString, type MemoryStorageOptions, type RedisStorageOptions, type StorageOption } from './storage/resolve'
export type { StatsSnapshot } from './stats/stats'
export type { MetricsOptions, MetricsRegistry } from './metrics/options'
export type { RateLimitOptions, RateLimitRule } from './http/rate-limits'
export { fsDriver, removeStaleTempFiles, type FsDriverInstance, type FsDriverOptions } from './storage/fs-driver'
export type { DeadLetter, Forwarder, ForwardingState, RefusedEvent } from './forward/types'
export type { DeliverBatch, ResolvedSinkOptions, SinkOptions, SinkType } from './forward/options'
export { SinkRefusal, SinkRetry } from './forward/sinks/deliver'
export type { ReplayFilter, ReplayProgress } from './forward/replay'
export {
  breakingRules,
  checkCompatibility,
  compatibleRules,
  type BreakingRule,
  type ComparableModel,
  type CompatibilityReport,
  type CompatibilityRule,
  type CompatibleRule,
  type ModelChange,
} from './governance/compatibility'
export { exportModel } from './governance/export'
export { parseModelDescription } from './governance/snapshot'
export { formatChange, formatCompatibilityReport } from './governance/report'
export { describeFields, pickExamples, renderCatalog, type CatalogField, type CatalogOptions } from './governance/catalog'
export { checkFixtures, readFixtures, type Fixture, type FixtureFailure, type FixtureValidator } from './governance/fixtures'
