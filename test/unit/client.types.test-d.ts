import { z } from 'zod'
import { describe, expectTypeOf, it } from 'vitest'
import { createEventModel } from 'event-ingest'
import { createEventClient, type EventClient } from 'event-ingest/client'

const model = createEventModel({
  events: {
    ProductViewed: { sources: ['storefront'], payload: z.object({ productId: z.string(), price: z.number().optional() }) },
    RefundIssued: { sources: ['api'], payload: z.object({ orderId: z.string(), amount: z.number() }) },
  },
})

describe('track() types its payload from the event name', () => {
  const client = createEventClient({ endpoint: 'http://127.0.0.1:1', source: 'storefront', model })

  it("accepts ProductViewed's payload and rejects a wrong one at compile time", () => {
    client.track('ProductViewed', { productId: 'prod_1', price: 9.5 })
    // @ts-expect-error productId must be a string
    client.track('ProductViewed', { productId: 42 })
    // @ts-expect-error productId is required
    client.track('ProductViewed', { price: 1 })
    // @ts-expect-error RefundIssued's payload is not ProductViewed's
    client.track('RefundIssued', { productId: 'prod_1' })
    expectTypeOf(client.track<'RefundIssued'>).parameter(1).toEqualTypeOf<{ orderId: string; amount: number }>()
  })

  it('refuses unknown names, and keeps canonical ones as JSON objects', () => {
    // @ts-expect-error not a registered name
    client.track('NoSuchEvent', {})
    client.track('CartUpdated', { cartId: 'c1' })
    // @ts-expect-error a payload is a JSON object
    client.track('CartUpdated', 'not an object')
  })

  it('types the canonical model without a model, and a model passed as a type only', () => {
    const plain = createEventClient({ endpoint: '/api', source: 'api' })
    expectTypeOf(plain).toEqualTypeOf<EventClient>()
    // @ts-expect-error not canonical
    plain.track('RefundIssued', { orderId: 'o', amount: 1 })
    const typed = createEventClient<(typeof model)['events']>({ endpoint: '/api', source: 'api' })
    typed.track('RefundIssued', { orderId: 'o', amount: 1 })
    // @ts-expect-error amount must be a number
    typed.track('RefundIssued', { orderId: 'o', amount: '1' })
    expectTypeOf(typed.track('RefundIssued', { orderId: 'o', amount: 1 })).toBeString()
  })

  it('types the options', () => {
    // @ts-expect-error 'web' is not a source
    createEventClient({ endpoint: '/api', source: 'web' })
    // @ts-expect-error occurredAt is a Date, a string or epoch ms
    client.track('CartUpdated', {}, { occurredAt: true })
  })
})
