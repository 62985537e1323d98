import { createHmac } from 'node:crypto'

// PII redaction: rules of the model that drop, mask or pseudonymise payload fields of valid events
// before they are stored (and so before they are forwarded: what is stored is what is forwarded).
// The rules are compiled once, with the model; the HMAC secret is the core's (`redaction.secret`).

/**
 * What a rule does to the value at its path: `drop` removes the key; `mask` replaces the value by
 * a fixed placeholder of the same JSON type (`"***"`, `0`, `false`, `{}`, `[]`, `null`); `hash`
 * replaces it by `hmac-sha256:<64 hex digits>`, the HMAC-SHA-256 of the value under the configured
 * secret (a string's own text, any other value's JSON text with keys sorted).
 */
export type RedactionAction = 'drop' | 'mask' | 'hash'

/** The actions, in the order they are applied to an event. */
export const redactionActions = ['drop', 'mask', 'hash'] as const satisfies readonly RedactionAction[]

/**
 * A rule of the model (`createEventModel({ redact: [...] })`).
 *
 * Paths are payload-relative: keys separated by dots (`customer.email`), `[]` after a key for every
 * element of the array there (`items[].email`, `matrix[][]`), `*` for every key of an object
 * (`contacts.*.phone`). A path that is missing from an event, or that runs through a value that is
 * not an object (or not an array, at a `[]`), leaves the event alone.
 *
 * @example
 * { events: ['OrderCreated'], path: 'customer.email', action: 'hash' }
 */
export interface RedactionRule {
  /**
   * The event names the rule applies to, or `'*'` for every event of the model.
   * @default '*'
   */
  events?: '*' | readonly string[]
  path: string
  action: RedactionAction
}

/** Rules of one event definition (`defineEvents({ X: { sources, redact: { 'customer.email': 'hash' } } })`): path → action. */
export type RedactionMap = Readonly<Record<string, RedactionAction>>

/** One rule as `GET /events/schema` publishes it for an event (never the secret). */
export interface PublishedRedaction {
  path: string
  action: RedactionAction
}

/** One step of a path: a key (or `*`, any key) and how many `[]` follow it. */
interface Segment {
  readonly key: string
  readonly any: boolean
  readonly arrays: number
}

interface CompiledRule extends PublishedRedaction {
  readonly segments: readonly Segment[]
}

/** The rules of a model, per event name, in the order they apply. */
export interface RedactionPlan {
  readonly byEvent: ReadonlyMap<string, readonly CompiledRule[]>
  /** Some rule hashes: the core needs a secret. */
  readonly hashes: boolean
}

/** Fields redacted, by action. */
export interface RedactionCounts {
  dropped: number
  masked: number
  hashed: number
}

/** What {@link Redactor.redact} did to a batch. */
export interface RedactedBatch<E> {
  /** The events, each redacted one a copy (the input and its payloads are never changed). */
  events: E[]
  /** Fields redacted in each event, parallel to `events`; undefined where none was. */
  counts: (RedactionCounts | undefined)[]
}

/** Applies a model's rules to validated events. */
export interface Redactor {
  /** Undefined when no field of any event was redacted (the batch stays as it came). */
  redact<E extends { name: string; payload: unknown }>(events: readonly E[]): RedactedBatch<E> | undefined
}

const SEGMENT = /^(\*|[^.[\]*]+)((?:\[\])*)$/
const forbiddenKeys = new Set(['__proto__', 'constructor'])

/** Parses a rule's path; a bad one throws a TypeError naming `field`. */
export function parseRedactionPath(path: unknown, field: string): Segment[] {
  if (typeof path !== 'string' || path === '') throw new TypeError(`[event-ingest] ${field} must be a non-empty payload path like "customer.email" or "items[].email", got ${shownValue(path)}`)
  return path.split('.').map((part) => {
    const match = SEGMENT.exec(part)
    if (!match) {
      throw new TypeError(`[event-ingest] ${field}: "${path}" is not a payload path: use keys separated by dots, "[]" after a key for each element of an array, "*" for any key (like "items[].email")`)
    }
    const key = match[1]!
    if (forbiddenKeys.has(key)) throw new TypeError(`[event-ingest] ${field}: "${path}" names "${key}", which no payload may carry`)
    return { key, any: key === '*', arrays: match[2]!.length / 2 }
  })
}

function checkAction(action: unknown, field: string): RedactionAction {
  if (!redactionActions.includes(action as RedactionAction)) throw new TypeError(`[event-ingest] ${field} must be "drop", "mask" or "hash", got ${shownValue(action)}`)
  return action as RedactionAction
}

/**
 * Compiles the rules of a model: each definition's own `redact` map and the model's `redact` list.
 * A bad rule throws a TypeError naming it: an unknown event, a bad path or action, a `drop` of
 * array elements, or one path given two actions for one event.
 */
export function compileRedaction(definitions: Readonly<Record<string, { redact?: RedactionMap }>>, rules: readonly RedactionRule[] | undefined): RedactionPlan {
  const perEvent = new Map<string, Map<string, { action: RedactionAction; segments: Segment[]; field: string }>>()
  const add = (name: string, path: string, action: RedactionAction, segments: Segment[], field: string) => {
    let paths = perEvent.get(name)
    if (!paths) perEvent.set(name, (paths = new Map()))
    const known = paths.get(path)
    if (known && known.action !== action) {
      throw new TypeError(`[event-ingest] ${field}: ${name}'s "${path}" is already redacted with "${known.action}" (${known.field}); a path takes one action`)
    }
    paths.set(path, known ?? { action, segments, field })
  }
  const compileOne = (path: unknown, action: unknown, field: string) => {
    const checked = checkAction(action, `${field}.action`)
    const segments = parseRedactionPath(path, `${field}.path`)
    if (checked === 'drop' && segments.at(-1)!.arrays > 0) {
      throw new TypeError(`[event-ingest] ${field}: "${path as string}" cannot be dropped element by element; drop the array ("${(path as string).replace(/(\[\])+$/, '')}") or mask its elements`)
    }
    return { action: checked, segments, path: path as string }
  }
  const names = Object.keys(definitions)
  for (const name of names) {
    const map = definitions[name]!.redact
    if (map === undefined) continue
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new TypeError(`[event-ingest] the redact of ${name} must be an object of payload path to "drop", "mask" or "hash", got ${shownValue(map)}`)
    for (const [path, action] of Object.entries(map)) {
      const rule = compileOne(path, action, `${name}.redact["${path}"]`)
      add(name, rule.path, rule.action, rule.segments, `${name}.redact`)
    }
  }
  if (rules !== undefined && !Array.isArray(rules)) throw new TypeError(`[event-ingest] redact must be an array of { events?, path, action }, got ${shownValue(rules)}`)
  ;(rules ?? []).forEach((rule: unknown, index) => {
    const field = `redact[${index}]`
    if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw new TypeError(`[event-ingest] ${field} must be { events?, path, action }, got ${shownValue(rule)}`)
    const { events = '*', path, action, ...rest } = rule as RedactionRule
    const unknown = Object.keys(rest)
    if (unknown.length > 0) throw new TypeError(`[event-ingest] ${field} has unknown key "${unknown[0]}"; a rule has events, path and action`)
    const compiled = compileOne(path, action, field)
    let targets: readonly string[]
    if (events === '*') targets = names
    else if (Array.isArray(events) && events.length > 0 && events.every((e) => typeof e === 'string')) {
      for (const name of events) {
        if (!Object.hasOwn(definitions, name)) throw new TypeError(`[event-ingest] ${field}.events names "${name}", which is not an event of the model`)
      }
      targets = events
    } else throw new TypeError(`[event-ingest] ${field}.events must be "*" or a non-empty array of event names, got ${shownValue(events)}`)
    for (const name of targets) add(name, compiled.path, compiled.action, compiled.segments, field)
  })
  const byEvent = new Map<string, CompiledRule[]>()
  let hashes = false
  for (const [name, paths] of perEvent) {
    const list = [...paths].map(([path, { action, segments }]) => ({ path, action, segments }))
    // Drops first: a value dropped is neither masked nor hashed after.
    list.sort((a, b) => redactionActions.indexOf(a.action) - redactionActions.indexOf(b.action))
    if (list.some((rule) => rule.action === 'hash')) hashes = true
    byEvent.set(name, list)
  }
  return { byEvent, hashes }
}

/** The rules of one event as published (path and action, in the order they apply). */
export function publishedRules(plan: RedactionPlan | undefined, name: string): PublishedRedaction[] | undefined {
  const rules = plan?.byEvent.get(name)
  return rules && rules.length > 0 ? rules.map(({ path, action }) => ({ path, action })) : undefined
}

/**
 * A redactor for a model's rules; undefined when the model has none. `secret` is required when a
 * rule hashes (the core checks it at creation, naming `redaction.secret`).
 *
 * @example
 * const redactor = createRedactor(model.redaction, { secret: process.env.EVENT_REDACTION_SECRET })
 * const redacted = redactor?.redact(model.validateBatch(body).events)
 */
export function createRedactor(plan: RedactionPlan | undefined, options: { secret?: string } = {}): Redactor | undefined {
  if (!plan || plan.byEvent.size === 0) return undefined
  const { secret } = options
  if (plan.hashes && (typeof secret !== 'string' || secret === '')) throw new TypeError('[event-ingest] the model has hash redaction rules: a secret is required')
  const hash = (value: unknown) => `hmac-sha256:${createHmac('sha256', secret!).update(typeof value === 'string' ? value : canonicalJson(value)).digest('hex')}`
  return {
    redact<E extends { name: string; payload: unknown }>(events: readonly E[]): RedactedBatch<E> | undefined {
      let out: E[] | undefined
      let counts: (RedactionCounts | undefined)[] | undefined
      for (let i = 0; i < events.length; i++) {
        const event = events[i]!
        const rules = plan.byEvent.get(event.name)
        if (!rules) continue
        const tally: RedactionCounts = { dropped: 0, masked: 0, hashed: 0 }
        let payload = event.payload
        for (const rule of rules) payload = visit(payload, rule, 0, tally, hash)
        if (payload === event.payload) continue
        out ??= events.slice()
        counts ??= new Array(events.length).fill(undefined)
        out[i] = { ...event, payload }
        counts[i] = tally
      }
      return out && counts ? { events: out, counts } : undefined
    },
  }
}

const DROP = Symbol('drop')

/** The object `node` with `rule` applied from segment `at`: `node` itself when nothing changed, else a copy. */
function visit(node: unknown, rule: CompiledRule, at: number, tally: RedactionCounts, hash: (value: unknown) => string): unknown {
  if (!isPlainObject(node)) return node
  const segment = rule.segments[at]!
  const keys = segment.any ? Object.keys(node) : Object.hasOwn(node, segment.key) ? [segment.key] : []
  let copy: Record<string, unknown> | undefined
  for (const key of keys) {
    const child = node[key]
    const next = descend(child, segment.arrays, rule, at, tally, hash)
    if (next === child) continue
    copy ??= { ...node }
    if (next === DROP) delete copy[key]
    else copy[key] = next
  }
  return copy ?? node
}

/** `value` with its `arrays` levels of `[]` walked, then the rest of the path or the action applied. */
function descend(value: unknown, arrays: number, rule: CompiledRule, at: number, tally: RedactionCounts, hash: (value: unknown) => string): unknown {
  if (arrays > 0) {
    if (!Array.isArray(value)) return value
    let copy: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const next = descend(value[i], arrays - 1, rule, at, tally, hash)
      if (next === value[i]) continue
      copy ??= value.slice()
      copy[i] = next
    }
    return copy ?? value
  }
  if (at < rule.segments.length - 1) return visit(value, rule, at + 1, tally, hash)
  switch (rule.action) {
    case 'drop':
      tally.dropped++
      return DROP
    case 'mask': {
      // A value already at its placeholder (null, "***", 0, false, {}, []) has nothing to hide.
      if (isPlaceholder(value)) return value
      tally.masked++
      return maskOf(value)
    }
    case 'hash':
      tally.hashed++
      return hash(value)
  }
}

/** A placeholder of the same JSON type that keeps nothing of the value (not even its length). */
export function maskOf(value: unknown): unknown {
  if (typeof value === 'string') return '***'
  if (typeof value === 'number') return 0
  if (typeof value === 'boolean') return false
  if (Array.isArray(value)) return []
  if (typeof value === 'object' && value !== null) return {}
  return null
}

function isPlaceholder(value: unknown): boolean {
  if (Array.isArray(value)) return value.length === 0
  if (isPlainObject(value)) return Object.keys(value).length === 0
  return value === maskOf(value)
}

/** JSON text with every object's keys sorted, so one value always hashes the same. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (isPlainObject(value)) {
    return `{${Object.keys(value).sort().filter((k) => value[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function shownValue(value: unknown): string {
  if (value === undefined) return 'undefined'
  const text = typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value))
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}
