import { randomBytes } from 'node:crypto'

/**
 * Realistic canonical v1 events for the bench: the ten event names, each from a source it is
 * expected from, shaped like `test/fixtures/v1/*.json` with the fields real producers add
 * (sessions, SKUs, amounts). About 300 bytes each, so a batch of 50 is about 15 KB.
 */
const templates: Record<string, unknown>[] = [
  {
    name: 'OrderCreated', source: 'api', companyId: 'co_42', subjectId: 'ord_9001',
    payload: { orderId: 'ord_9001', currency: 'EUR', total: 129.9, items: [{ sku: 'TSHIRT-BLK-M', quantity: 2, unitPrice: 29.95 }, { sku: 'MUG-WHT', quantity: 1, unitPrice: 70 }], shippingCountry: 'DE', paymentMethod: 'card' },
  },
  {
    name: 'CheckoutStarted', source: 'storefront', companyId: 'co_42', subjectId: 'cart_77',
    payload: { cartId: 'cart_77', itemCount: 3, value: 129.9, currency: 'EUR', sessionId: 'sess_5b1c9e0a7f', step: 'shipping', device: 'mobile' },
  },
  {
    name: 'ProductViewed', source: 'storefront', companyId: 'co_42', subjectId: 'sess_5b1c9e0a7f',
    payload: { productId: 'prod_501', sku: 'TSHIRT-BLK-M', price: 29.95, currency: 'EUR', category: 'apparel/t-shirts', referrer: 'search', query: 'black t-shirt' },
  },
  {
    name: 'CartUpdated', source: 'storefront', companyId: 'co_42', subjectId: 'cart_77',
    payload: { cartId: 'cart_77', action: 'add', sku: 'MUG-WHT', quantity: 1, unitPrice: 70, cartValue: 129.9, currency: 'EUR', sessionId: 'sess_5b1c9e0a7f' },
  },
  {
    name: 'EmailSent', source: 'api', companyId: 'co_42', subjectId: 'ord_9001',
    payload: { template: 'order-confirmation', messageId: 'msg_abc123', provider: 'postmark', locale: 'de-DE', recipientHash: '9f86d081884c7d65' },
  },
  {
    name: 'PromoApplied', source: 'storefront', companyId: 'co_42', subjectId: 'cart_77',
    payload: { code: 'WELCOME10', discount: 10, kind: 'percent', cartId: 'cart_77', cartValue: 129.9, currency: 'EUR' },
  },
  {
    name: 'FeatureUsageEvent', source: 'admin', companyId: 'co_42', subjectId: 'usr_7',
    payload: { feature: 'bulk-price-edit', action: 'used', count: 12, plan: 'pro', durationMs: 5400, screen: 'catalog/products' },
  },
  {
    name: 'BotCommand', source: 'bot', companyId: 'co_42', subjectId: 'usr_7',
    payload: { command: '/orders', args: ['today', '--status=open'], channel: 'slack', workspace: 'T024BE7LD', responseMs: 182 },
  },
  {
    name: 'AgentHeartbeat', source: 'agent', companyId: 'co_42', subjectId: 'inst_3',
    payload: { instanceId: 'inst_3', version: '4.2.1', uptimeSeconds: 86400, load: 0.42, memoryMb: 512, region: 'eu-central-1' },
  },
  {
    name: 'DashboardViewed', source: 'admin', companyId: 'co_42', subjectId: 'usr_7',
    payload: { dashboard: 'sales-overview', range: 'last-7-days', filters: { channel: 'web', country: 'DE' }, widgets: 8 },
  },
  {
    name: 'FeatureUsageEvent', source: 'bot', companyId: 'co_42',
    payload: { feature: 'order-lookup', action: 'used', count: 1, plan: 'pro', channel: 'slack' },
  },
  {
    name: 'PromoApplied', source: 'admin', companyId: 'co_42',
    payload: { code: 'BLACKFRIDAY', discount: 25, kind: 'percent', appliedBy: 'usr_7', validUntil: '2026-12-01T00:00:00Z' },
  },
  {
    name: 'FeatureUsageEvent', source: 'api', companyId: 'co_42',
    payload: { feature: 'webhooks', action: 'delivered', count: 3, plan: 'pro', endpoint: 'https://example.com/hooks/orders' },
  },
]

/** Width of the per-body serial in every id: base 36, so 36^8 bodies before ids could repeat. */
const SERIAL_WIDTH = 8
const SERIAL_MARK = '~'.repeat(SERIAL_WIDTH)

/** The names covered by the bench events (all ten canonical ones). */
export const benchEventNames: readonly string[] = [...new Set(templates.map((t) => t.name as string))]

/** One event object from template `index` (cycled), with the given id and time. */
export function makeBenchEvent(index: number, id: string, occurredAt: string): Record<string, unknown> {
  const template = templates[index % templates.length]!
  return { id, name: template.name, schemaVersion: 1, occurredAt, ...template }
}

/**
 * Request bodies of `count` events whose ids are unique per body. The JSON is serialised once with
 * a fixed-width placeholder in every id; each body is a copy of those bytes with the body's serial
 * written over the placeholders (about a microsecond for 15 KB, so the load generator stays cheap
 * and every body has the same length).
 */
export interface BodyFactory {
  /** Events per body. */
  readonly count: number
  /** Byte length of every body. */
  readonly bytes: number
  /** A body whose ids this factory never returned before. */
  next(): Buffer
  /** Bodies made so far. */
  readonly made: number
}

/** Creates a {@link BodyFactory}; `tag` makes ids unique across factories and processes. */
export function createBodyFactory(count: number, tag = randomBytes(4).toString('hex'), occurredAt = new Date().toISOString()): BodyFactory {
  const events = Array.from({ length: count }, (_, i) => makeBenchEvent(i, `evt_${tag}_${SERIAL_MARK}_${i}`, occurredAt))
  const template = Buffer.from(JSON.stringify(events))
  const offsets: number[] = []
  for (let at = template.indexOf(SERIAL_MARK); at >= 0; at = template.indexOf(SERIAL_MARK, at + SERIAL_WIDTH)) offsets.push(at)
  if (offsets.length !== count) throw new Error(`bench body template: expected ${count} id slots, found ${offsets.length}`)
  let made = 0
  return {
    count,
    bytes: template.length,
    next() {
      const serial = (made++).toString(36).padStart(SERIAL_WIDTH, '0')
      const body = Buffer.allocUnsafeSlow(template.length)
      template.copy(body)
      for (let k = 0; k < SERIAL_WIDTH; k++) {
        const code = serial.charCodeAt(k)
        for (const offset of offsets) body[offset + k] = code
      }
      return body
    },
    get made() {
      return made
    },
  }
}

/** Event objects with unique ids, for loading a store in-process. */
export function makeEventBatch(size: number, tag: string, serial: number, occurredAt: string): Record<string, unknown>[] {
  return Array.from({ length: size }, (_, i) => makeBenchEvent(i, `evt_${tag}_${serial.toString(36)}_${i}`, occurredAt))
}
