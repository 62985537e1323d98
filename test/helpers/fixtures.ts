import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('../fixtures/v1/', import.meta.url))

/** Golden v1 fixtures: every one must stay valid forever. */
export const fixtures: { file: string; event: Record<string, any> }[] = readdirSync(dir)
  .filter((file) => file.endsWith('.json'))
  .sort()
  .map((file) => ({ file, event: JSON.parse(readFileSync(dir + file, 'utf8')) }))

/** A fresh valid event, with fields overridden. */
export function makeEvent(overrides: Record<string, unknown> = {}): Record<string, any> {
  return {
    id: `evt_${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`,
    name: 'ProductViewed',
    schemaVersion: 1,
    occurredAt: new Date().toISOString(),
    source: 'storefront',
    payload: { productId: 'prod_1' },
    ...overrides,
  }
}
