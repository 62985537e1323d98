import { z } from 'zod'
import { type Limits, resolveLimits } from './limits'
import { createBatchValidator, type BatchMapping, type BatchResult, type EventResult } from './validate'
import type { ReceivedBody } from './received'
import { describeModel, type ModelDescription } from './schema'
import { compileRedaction, type RedactionPlan, type RedactionRule } from './redact'
import { SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, canonicalEvents, eventSources, type CanonicalEvents, type EventDefinitions, type EventSource, type SourcePolicy } from './definitions'
import { withinYears } from './time'

/**
 * The envelope every event travels in. Unknown top-level fields from newer producers are kept.
 */
export interface EventEnvelope<N extends string = string, P = Record<string, unknown>> {
  /** Unique id chosen by the producer; the key for deduplication. */
  id: string
  /** A registered event name. */
  name: N
  /** Envelope version; 1 today. */
  schemaVersion: number
  /** When it happened: ISO 8601, normalised to UTC (`...Z`) once accepted. */
  occurredAt: string
  /** Which producer sent it. */
  source: EventSource
  companyId?: string
  subjectId?: string
  payload: P
  [field: string]: unknown
}

/** The payload type of a definition: inferred from its zod schema, or any JSON object. */
export type PayloadOf<D> = D extends { payload: infer P extends z.ZodType } ? z.output<P> : Record<string, unknown>

/** The union of envelopes a set of definitions accepts, discriminated by `name`. */
export type EventOf<D extends EventDefinitions> = {
  [N in keyof D & string]: EventEnvelope<N, PayloadOf<D[N]>>
}[keyof D & string]

/** The event union accepted by a model. */
export type InferEvent<M> = M extends EventModel<infer D> ? EventOf<D> : never

/** The payload type of event `N` in model `M`. */
export type InferPayload<M, N extends string> = M extends EventModel<infer D> ? (N extends keyof D ? PayloadOf<D[N]> : never) : never

/** Canonical definitions overlaid with a host's own. */
export type MergeEvents<E extends EventDefinitions> = Omit<CanonicalEvents, keyof E> & E

/** Options of {@link createEventModel}. */
export interface EventModelOptions<E extends EventDefinitions = {}> {
  /** Event names to add (or canonical ones to redefine), with sources and optional payload schemas. */
  events?: E
  /**
   * Keep the ten canonical v1 events.
   * @default true
   */
  canonical?: boolean
  /** @default 'reject' */
  sourcePolicy?: SourcePolicy
  /** Size and count limits; unset fields keep their defaults. */
  limits?: Partial<Limits>
  /**
   * PII redaction rules for all events (`events: '*'`, the default) or some, beside each
   * definition's own `redact`: payload paths to drop, mask or pseudonymise (HMAC-SHA-256 under the
   * core's `redaction.secret`) before storage and forwarding.
   * @example [{ events: ['OrderCreated'], path: 'customer.email', action: 'hash' }]
   */
  redact?: readonly RedactionRule[]
}

/** A configured event model: definitions, limits, validation and the published schema. */
export interface EventModel<D extends EventDefinitions = CanonicalEvents> {
  readonly schemaVersion: number
  readonly supportedVersions: readonly number[]
  readonly events: Readonly<D>
  readonly names: readonly (keyof D & string)[]
  readonly limits: Readonly<Limits>
  readonly sourcePolicy: SourcePolicy
  /** The redaction rules of every event, compiled (see `createRedactor`). */
  readonly redaction: RedactionPlan
  /** The zod schema of the envelope (without name-specific payload checks). */
  readonly envelope: z.ZodType
  /**
   * Validates a batch. Returns the valid events, normalised, and for each invalid one its index,
   * its id when readable and errors naming the field. With the body `parseBatchBytes` made of the
   * input (`received`), a valid event with nothing to normalise is returned as the parsed object
   * itself, not a copy, and a batch kept exactly as sent carries that body on (`received`).
   * @throws IngestError when the batch as a whole is refused: `not_an_array`, `too_many_events`,
   * `event_too_large`, `too_deep`. With a `mapping` (`cloudEventsMapping()`), the elements are of
   * another format (CloudEvents), mapped to envelopes and rejected in that format's terms.
   */
  validateBatch(input: unknown, received?: ReceivedBody, mapping?: BatchMapping): BatchResult<EventOf<D>>
  /** Validates one event. */
  validateEvent(input: unknown): EventResult<EventOf<D>>
  /** The model as published by `GET /events/schema`, JSON Schema included. */
  describe(): ModelDescription
}

/**
 * Creates an event model: the canonical v1 events plus any the host adds, with limits and policy.
 *
 * @example
 * import { z } from 'zod'
 * import { createEventModel, type InferEvent } from 'event-ingest'
 *
 * const model = createEventModel({
 *   events: {
 *     RefundIssued: { sources: ['api'], payload: z.object({ orderId: z.string(), amount: z.number() }) },
 *   },
 * })
 * type Event = InferEvent<typeof model>
 * const { events, rejected } = model.validateBatch(JSON.parse(body))
 */
export function createEventModel<const E extends EventDefinitions = {}>(
  options: EventModelOptions<E> = {},
): EventModel<MergeEvents<E>> {
  if (options.events !== undefined && (typeof options.events !== 'object' || options.events === null || Array.isArray(options.events))) {
    throw new TypeError('[event-ingest] events must be an object of event name to definition')
  }
  if (options.canonical !== undefined && typeof options.canonical !== 'boolean') {
    throw new TypeError(`[event-ingest] canonical must be true or false, got ${String(options.canonical)}`)
  }
  const definitions = {
    ...(options.canonical === false ? {} : canonicalEvents),
    ...options.events,
  } as unknown as MergeEvents<E>
  for (const [name, definition] of Object.entries(definitions as EventDefinitions)) {
    if (!/^[A-Za-z][A-Za-z0-9_.-]{0,127}$/.test(name)) {
      throw new TypeError(`[event-ingest] event name "${name}" must start with a letter and use only letters, digits, "_", "." or "-" (at most 128)`)
    }
    if (typeof definition !== 'object' || definition === null) {
      throw new TypeError(`[event-ingest] event "${name}" must be defined as { sources, payload?, description? }`)
    }
    if (!Array.isArray(definition.sources) || definition.sources.length === 0) {
      throw new TypeError(`[event-ingest] event "${name}" needs at least one source`)
    }
    for (const source of definition.sources) {
      if (!eventSources.includes(source)) {
        throw new TypeError(`[event-ingest] event "${name}" has unknown source "${source}"; sources are ${eventSources.join(', ')}`)
      }
    }
    if (definition.payload !== undefined) checkZod4Schema(name, definition.payload)
    if (definition.description !== undefined && typeof definition.description !== 'string') {
      throw new TypeError(`[event-ingest] the description of ${name} must be a string`)
    }
  }
  const redaction = compileRedaction(definitions as EventDefinitions, options.redact)
  const sourcePolicy = options.sourcePolicy ?? 'reject'
  if (sourcePolicy !== 'reject' && sourcePolicy !== 'accept') {
    throw new TypeError(`[event-ingest] sourcePolicy must be "reject" or "accept", got "${String(sourcePolicy)}"`)
  }
  const limits = Object.freeze(resolveLimits(options.limits))
  const envelope = createEnvelopeSchema(limits)
  const validator = createBatchValidator({ definitions, envelope, limits, sourcePolicy })
  let description: ModelDescription | undefined
  const model: EventModel<MergeEvents<E>> = {
    schemaVersion: SCHEMA_VERSION,
    supportedVersions: SUPPORTED_SCHEMA_VERSIONS,
    events: Object.freeze(definitions),
    names: Object.freeze(Object.keys(definitions)) as (keyof MergeEvents<E> & string)[],
    limits,
    sourcePolicy,
    redaction,
    envelope,
    validateBatch: validator.validateBatch as EventModel<MergeEvents<E>>['validateBatch'],
    validateEvent: validator.validateEvent as EventModel<MergeEvents<E>>['validateEvent'],
    describe: () => (description ??= describeModel(model)),
  }
  return model
}

/**
 * Payload schemas are validated and published (as JSON Schema) with zod 4, a peer dependency: a
 * schema of another zod (zod 3 has `_def` and no `_zod`) would fail on the first event or the
 * first `GET /events/schema`, so it is refused here, naming the event.
 */
function checkZod4Schema(name: string, schema: unknown): void {
  const internals = (schema as { _zod?: { def?: unknown } } | null)?._zod
  if (typeof schema === 'object' && schema !== null && typeof internals === 'object' && internals !== null && internals.def !== undefined) return
  const zod3 = typeof schema === 'object' && schema !== null && '_def' in schema
  throw new TypeError(
    `[event-ingest] the payload schema of ${name} is not a zod 4 schema${zod3 ? ' (it looks like a zod 3 schema)' : ''}: ` +
      'event-ingest validates and publishes payloads with zod 4, its peer dependency; install zod@^4 and build the schema with it (import { z } from "zod")',
  )
}

/** Why an `occurredAt` outside years 0000-9999 in UTC is refused (no path: the caller adds it). */
function outOfYearsMessage(value: string): string {
  const ms = Date.parse(value)
  const utc = ms === ms ? `, which is ${new Date(ms).toISOString()}` : ''
  return `must fall in years 0000-9999 once in UTC (0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z), got ${JSON.stringify(value)}${utc}`
}

/** The zod schema of the v1 envelope under the given limits. */
export function createEnvelopeSchema(limits: Pick<Limits, 'maxIdLength' | 'maxRefLength'>) {
  return z.looseObject({
    id: z.string().min(1).max(limits.maxIdLength),
    name: z.string().min(1),
    schemaVersion: z.int().min(1),
    // An offset can carry a timestamp of year 0000 or 9999 outside the four-digit years once in UTC,
    // where it has no ISO 8601 form this pattern accepts: it could never be sent on again.
    occurredAt: z.iso.datetime({ offset: true }).refine((value) => {
      const ms = Date.parse(value)
      return ms !== ms || withinYears(ms)
    }, { error: (issue) => outOfYearsMessage(issue.input as string) }),
    source: z.enum(eventSources),
    companyId: z.string().min(1).max(limits.maxRefLength).optional(),
    subjectId: z.string().min(1).max(limits.maxRefLength).optional(),
    payload: z.record(z.string(), z.unknown()),
  })
}
