import { z } from 'zod'
import { describe, expectTypeOf, it } from 'vitest'
import { createEventModel, type EventSource, type InferEvent, type InferPayload } from 'event-ingest'

const model = createEventModel({
  events: {
    RefundIssued: { sources: ['api', 'admin'], payload: z.object({ orderId: z.string(), amount: z.number() }) },
    SurveyAnswered: { sources: ['storefront'] },
  },
})
type Event = InferEvent<typeof model>

describe('inferred event types of an extended model', () => {
  it('unions canonical and host names', () => {
    expectTypeOf<Event['name']>().toEqualTypeOf<
      | 'OrderCreated' | 'CheckoutStarted' | 'ProductViewed' | 'CartUpdated' | 'EmailSent' | 'PromoApplied'
      | 'FeatureUsageEvent' | 'BotCommand' | 'AgentHeartbeat' | 'DashboardViewed' | 'RefundIssued' | 'SurveyAnswered'
    >()
  })

  it('infers a payload from its zod schema, following the name', () => {
    expectTypeOf<InferPayload<typeof model, 'RefundIssued'>>().toEqualTypeOf<{ orderId: string; amount: number }>()
    const handle = (event: Event) => {
      if (event.name === 'RefundIssued') {
        expectTypeOf(event.payload).toEqualTypeOf<{ orderId: string; amount: number }>()
        expectTypeOf(event.payload.amount).toBeNumber()
      }
    }
    expectTypeOf(handle).parameter(0).toEqualTypeOf<Event>()
  })

  it('types payloads without a schema as JSON objects', () => {
    expectTypeOf<InferPayload<typeof model, 'SurveyAnswered'>>().toEqualTypeOf<Record<string, unknown>>()
    expectTypeOf<InferPayload<typeof model, 'OrderCreated'>>().toEqualTypeOf<Record<string, unknown>>()
  })

  it('types the envelope fields', () => {
    expectTypeOf<Event['source']>().toEqualTypeOf<EventSource>()
    expectTypeOf<Event['occurredAt']>().toBeString()
    expectTypeOf<Event['companyId']>().toEqualTypeOf<string | undefined>()
  })

  it('returns typed events from validateBatch', () => {
    const result = model.validateBatch([])
    expectTypeOf(result.events).toEqualTypeOf<Event[]>()
  })

  it('refuses unknown names and sources at compile time', () => {
    // @ts-expect-error not a registered name
    expectTypeOf<InferPayload<typeof model, 'Nope'>>().toEqualTypeOf<{ a: 1 }>()
    // @ts-expect-error 'web' is not a source
    createEventModel({ events: { X: { sources: ['web'] } } })
  })
})

describe('the core keeps the types of the model it is given', () => {
  it('types stored events from a host model', async () => {
    const { createEventIngest } = await import('event-ingest')
    const ingest = createEventIngest({ model })
    expectTypeOf(ingest.model).toEqualTypeOf<typeof model>()
    const page = await ingest.events()
    const event = page.events[0]!
    if (event.name === 'RefundIssued') expectTypeOf(event.payload.amount).toBeNumber()
    const plain = createEventIngest({ events: { Ping: { sources: ['agent'] } } })
    expectTypeOf<(typeof plain.model.names)[number]>().toEqualTypeOf<keyof typeof import('event-ingest').canonicalEvents | 'Ping'>()
  })
})

describe('redaction rules, typed', () => {
  it('takes rules with an action of drop, mask or hash, per definition or for the model, and keeps inference', () => {
    const redacting = createEventModel({
      events: { SignedUp: { sources: ['storefront'], payload: z.object({ email: z.string() }), redact: { email: 'hash' } } },
      redact: [{ events: ['OrderCreated'], path: 'customer.email', action: 'mask' }, { path: 'debug', action: 'drop' }],
    })
    expectTypeOf<InferPayload<typeof redacting, 'SignedUp'>>().toEqualTypeOf<{ email: string }>()
    // @ts-expect-error an action is drop, mask or hash
    createEventModel({ redact: [{ path: 'email', action: 'encrypt' }] })
    // @ts-expect-error a definition's redact maps a path to an action
    createEventModel({ events: { X: { sources: ['api'], redact: { email: 'wipe' } } } })
  })
})
