import type { z } from 'zod'
import type { RedactionMap } from './redact'

// The event vocabulary (sources, envelope versions, definitions): what the model, its validator and
// its published description share, so none of them needs another to know it.

/** Where events come from. */
export const eventSources = ['storefront', 'admin', 'api', 'bot', 'agent'] as const
/** A producer of events. */
export type EventSource = (typeof eventSources)[number]

/** The newest envelope version this package understands. */
export const SCHEMA_VERSION = 1
/** Every envelope version this package accepts. A version once supported stays supported. */
export const SUPPORTED_SCHEMA_VERSIONS: readonly number[] = Object.freeze([1])

/** What is known about one event name. */
export interface EventDefinition<P extends z.ZodType = z.ZodType> {
  /** Sources the event is expected from; others are rejected under the default source policy. */
  sources: readonly EventSource[]
  /** Optional zod schema for `payload`. Without one, any JSON object is accepted. */
  payload?: P
  /** One line for humans, published by `GET /events/schema`. */
  description?: string
  /**
   * PII redaction of this event's payload before storage and forwarding: payload path → `drop`,
   * `mask` or `hash` (`{ 'customer.email': 'hash', 'items[].phone': 'mask' }`). Published by
   * `GET /events/schema`. See `RedactionRule` for the path syntax.
   */
  redact?: RedactionMap
}

/** A map of event name to definition. */
export type EventDefinitions = Record<string, EventDefinition>

/**
 * Declares event definitions with their literal types kept, so payload types can be inferred.
 *
 * @example
 * const events = defineEvents({
 *   RefundIssued: { sources: ['api', 'admin'], payload: z.object({ orderId: z.string(), amount: z.number() }) },
 * })
 */
export function defineEvents<const D extends EventDefinitions>(definitions: D): D {
  return definitions
}

/** The ten canonical v1 events and the sources each is expected from. */
export const canonicalEvents = defineEvents({
  OrderCreated: { sources: ['api'], description: 'An order was placed.' },
  CheckoutStarted: { sources: ['storefront'], description: 'A shopper started checkout.' },
  ProductViewed: { sources: ['storefront'], description: 'A shopper viewed a product page.' },
  CartUpdated: { sources: ['storefront'], description: 'A cart changed (item added, removed or quantity changed).' },
  EmailSent: { sources: ['api'], description: 'A transactional or marketing email was sent.' },
  PromoApplied: { sources: ['storefront', 'admin'], description: 'A promotion or coupon was applied.' },
  FeatureUsageEvent: { sources: ['admin', 'bot', 'api'], description: 'A product feature was used.' },
  BotCommand: { sources: ['bot'], description: 'The chat bot received a command.' },
  AgentHeartbeat: { sources: ['agent'], description: 'An instance agent reported that it is alive.' },
  DashboardViewed: { sources: ['admin'], description: 'An admin opened a dashboard.' },
})
/** The canonical v1 definitions' type. */
export type CanonicalEvents = typeof canonicalEvents

/**
 * What happens to an event whose source is not among its name's expected sources:
 * `'reject'` (default) rejects it naming the allowed sources; `'accept'` stores it anyway.
 */
export type SourcePolicy = 'reject' | 'accept'
