import type { ModelDescription } from '../model/schema'

// The backward-compatibility rules of the event model: every v1 event that was valid against the
// model before must stay valid against the model after. The check is structural, over the JSON
// Schema that zod 4's `z.toJSONSchema` emits and `GET /events/schema` publishes.

/** Rules whose finding makes some event valid before invalid after. */
export const breakingRules = [
  'event-removed',
  'source-removed',
  'source-policy-tightened',
  'version-removed',
  'field-removed',
  'field-made-required',
  'required-field-added',
  'type-narrowed',
  'enum-value-removed',
  'bound-tightened',
  'additional-properties-closed',
  'limit-lowered',
] as const

/** Rules whose finding keeps every event valid before valid after. */
export const compatibleRules = [
  'event-added',
  'source-added',
  'source-policy-loosened',
  'version-added',
  'field-added',
  'field-made-optional',
  'type-widened',
  'enum-value-added',
  'bound-loosened',
  'additional-properties-opened',
  'limit-raised',
  // Redaction changes what is stored of an event, never whether it is valid: reported, never breaking.
  'redaction-added',
  'redaction-removed',
  'redaction-changed',
] as const

/** A rule that breaks backward compatibility. */
export type BreakingRule = (typeof breakingRules)[number]
/** A rule that keeps backward compatibility. */
export type CompatibleRule = (typeof compatibleRules)[number]
/** Every rule of {@link checkCompatibility}. */
export type CompatibilityRule = BreakingRule | CompatibleRule

/** One difference between two models. */
export interface ModelChange {
  /** `breaking`: some event valid before is invalid after; `compatible`: none is. */
  kind: 'breaking' | 'compatible'
  rule: CompatibilityRule
  /** The event's name, or `(envelope)`, `(model)` and `(limits)` for what all events share. */
  event: string
  /**
   * Where, inside the event: `sources`, `payload`, `payload.items[].sku` (`[]` an array's items,
   * `[0]` a tuple's first, `{}` any key of a record, `|1` the second option of a union).
   */
  path: string
  /** What changed, before and after: `maxLength 64 → 32`. */
  message: string
}

/** The outcome of {@link checkCompatibility}. */
export interface CompatibilityReport {
  /** True when no change is breaking. */
  compatible: boolean
  breaking: ModelChange[]
  /** Additions and loosenings that keep every v1 event valid. */
  additions: ModelChange[]
}

/** The parts of a model description the check reads (an export or a `GET /events/schema` body). */
export type ComparableModel = Pick<ModelDescription, 'events' | 'envelopeSchema'> & Partial<Pick<ModelDescription, 'supportedVersions' | 'sourcePolicy' | 'limits'>>

const breakingSet: ReadonlySet<string> = new Set(breakingRules)

/**
 * Compares two model descriptions and lists every change, breaking or compatible: an event name
 * or expected source removed, a payload field removed or made required, a type narrowed, an enum
 * value removed, a bound tightened (length, range, items, pattern, format), `additionalProperties`
 * closed, a supported version or a limit lowered; and the additions that keep v1 events valid.
 *
 * @example
 * import { checkCompatibility, createEventModel } from 'event-ingest'
 * import saved from './events.schema.json' with { type: 'json' }
 *
 * const report = checkCompatibility(saved, createEventModel({ events }).describe())
 * if (!report.compatible) throw new Error(report.breaking.map((c) => `${c.event} ${c.path}: ${c.rule}`).join('\n'))
 */
export function checkCompatibility(before: ComparableModel, after: ComparableModel): CompatibilityReport {
  const changes: ModelChange[] = []
  const emit = (rule: CompatibilityRule, event: string, path: string, message: string) =>
    changes.push({ kind: breakingSet.has(rule) ? 'breaking' : 'compatible', rule, event, path, message })

  compareModelSettings(before, after, emit)
  compareSchemas(before.envelopeSchema, after.envelopeSchema, { emit: (rule, path, message) => emit(rule, '(envelope)', path, message), rootBefore: before.envelopeSchema, rootAfter: after.envelopeSchema, seen: new Set(['#|#']) }, 'envelope')

  const afterEvents = new Map(after.events.map((event) => [event.name, event]))
  const beforeNames = new Set(before.events.map((event) => event.name))
  for (const old of before.events) {
    const now = afterEvents.get(old.name)
    if (!now) {
      emit('event-removed', old.name, 'name', `event ${old.name} is no longer registered`)
      continue
    }
    for (const source of old.sources) {
      if (!now.sources.includes(source)) emit('source-removed', old.name, 'sources', `source "${source}" is no longer expected (now ${now.sources.join(', ')})`)
    }
    for (const source of now.sources) {
      if (!old.sources.includes(source)) emit('source-added', old.name, 'sources', `source "${source}" is now expected too`)
    }
    const context: SchemaContext = {
      emit: (rule, path, message) => emit(rule, old.name, path, message),
      rootBefore: old.payloadSchema,
      rootAfter: now.payloadSchema,
      // The root is being compared: a recursive schema's `$ref: '#'` stops there.
      seen: new Set(['#|#']),
    }
    compareSchemas(old.payloadSchema, now.payloadSchema, context, 'payload')
    compareRedaction(old.redact, now.redact, (rule, path, message) => emit(rule, old.name, path, message))
  }
  for (const event of after.events) {
    if (!beforeNames.has(event.name)) emit('event-added', event.name, 'name', `new event ${event.name} (${event.sources.join(', ')})`)
  }

  const breaking = changes.filter((change) => change.kind === 'breaking')
  return { compatible: breaking.length === 0, breaking, additions: changes.filter((change) => change.kind === 'compatible') }
}

type Emit = (rule: CompatibilityRule, event: string, path: string, message: string) => void

/** An event's redaction rules before and after (absent in exports made before redaction existed: none). */
function compareRedaction(before: readonly { path: string; action: string }[] | undefined, after: readonly { path: string; action: string }[] | undefined, emit: SchemaEmit): void {
  const was = new Map((Array.isArray(before) ? before : []).map((rule) => [rule.path, rule.action]))
  const now = new Map((Array.isArray(after) ? after : []).map((rule) => [rule.path, rule.action]))
  for (const [path, action] of was) {
    const next = now.get(path)
    if (next === undefined) emit('redaction-removed', `payload.${path}`, `payload.${path} is no longer redacted (was ${action}): stored and forwarded events carry its value again`)
    else if (next !== action) emit('redaction-changed', `payload.${path}`, `redaction of payload.${path} ${action} → ${next}`)
  }
  for (const [path, action] of now) {
    if (!was.has(path)) emit('redaction-added', `payload.${path}`, `payload.${path} is now redacted at ingest (${action})`)
  }
}

function compareModelSettings(before: ComparableModel, after: ComparableModel, emit: Emit): void {
  if (before.supportedVersions && after.supportedVersions) {
    for (const version of before.supportedVersions) {
      if (!after.supportedVersions.includes(version)) emit('version-removed', '(model)', 'schemaVersion', `schemaVersion ${version} is no longer supported`)
    }
    for (const version of after.supportedVersions) {
      if (!before.supportedVersions.includes(version)) emit('version-added', '(model)', 'schemaVersion', `schemaVersion ${version} is now supported`)
    }
  }
  if (before.sourcePolicy && after.sourcePolicy && before.sourcePolicy !== after.sourcePolicy) {
    if (after.sourcePolicy === 'reject') emit('source-policy-tightened', '(model)', 'sourcePolicy', 'sourcePolicy "accept" → "reject": events from unexpected sources are now rejected')
    else emit('source-policy-loosened', '(model)', 'sourcePolicy', `sourcePolicy "${before.sourcePolicy}" → "${after.sourcePolicy}"`)
  }
  // Limits a valid event is held to; the others (batch and body sizes, inflation) bound requests.
  if (before.limits && after.limits) {
    for (const name of ['maxEventBytes', 'maxDepth', 'maxIdLength', 'maxRefLength'] as const) {
      const was = before.limits[name]
      const now = after.limits[name]
      if (typeof was !== 'number' || typeof now !== 'number' || was === now) continue
      emit(now < was ? 'limit-lowered' : 'limit-raised', '(limits)', `limits.${name}`, `${name} ${was} → ${now}`)
    }
  }
}

// ── JSON Schema comparison ───────────────────────────────────────────────────────────────────

type Schema = Record<string, unknown> | boolean
type SchemaEmit = (rule: CompatibilityRule, path: string, message: string) => void

interface SchemaContext {
  emit: SchemaEmit
  /** The documents `$ref`s resolve in. */
  rootBefore: unknown
  rootAfter: unknown
  /** `$ref` pairs already being compared: recursive schemas stop there. */
  seen?: Set<string>
}

const lowerBounds = [['minLength', 'length'], ['minItems', 'items'], ['minProperties', 'properties']] as const
const upperBounds = [['maxLength', 'length'], ['maxItems', 'items'], ['maxProperties', 'properties']] as const

/** Compares one schema before with one after at `path`, emitting every change found. */
function compareSchemas(beforeInput: unknown, afterInput: unknown, context: SchemaContext, path: string): void {
  const before = resolve(beforeInput, context.rootBefore)
  const after = resolve(afterInput, context.rootAfter)
  const refKey = refPair(beforeInput, afterInput)
  if (refKey) {
    const seen = (context.seen ??= new Set())
    if (seen.has(refKey)) return
    seen.add(refKey)
  }
  if (before === false || after === true || isEmptySchema(after)) {
    if (!(before === true || isEmptySchema(before)) && (after === true || isEmptySchema(after))) context.emit('type-widened', path, 'now accepts any value')
    return
  }
  if (after === false) {
    context.emit('type-narrowed', path, 'now accepts no value at all')
    return
  }
  const b = before === true ? {} : before
  const a = after

  const beforeOptions = unionOptions(b)
  const afterOptions = unionOptions(a)
  if (beforeOptions || afterOptions) return compareUnions(beforeOptions ?? [b], afterOptions ?? [a], context, path)

  compareTypes(b, a, context, path)
  compareValues(b, a, context, path)
  compareBounds(b, a, context, path)
  compareObjects(b, a, context, path)
  compareArrays(b, a, context, path)
  compareAllOf(b, a, context, path)
}

function compareTypes(b: Record<string, unknown>, a: Record<string, unknown>, context: SchemaContext, path: string): void {
  const was = typeSet(b)
  const now = typeSet(a)
  if (now === undefined) {
    if (was !== undefined) context.emit('type-widened', path, `type ${[...was].join(' | ')} → any`)
    return
  }
  if (was === undefined) {
    context.emit('type-narrowed', path, `type any → ${[...now].join(' | ')}`)
    return
  }
  const lost = [...was].filter((type) => !accepts(now, type))
  const gained = [...now].filter((type) => !accepts(was, type))
  if (lost.length) context.emit('type-narrowed', path, `type ${[...was].join(' | ')} → ${[...now].join(' | ')}`)
  else if (gained.length) context.emit('type-widened', path, `type ${[...was].join(' | ')} → ${[...now].join(' | ')}`)
}

function compareValues(b: Record<string, unknown>, a: Record<string, unknown>, context: SchemaContext, path: string): void {
  const was = allowedValues(b)
  const now = allowedValues(a)
  if (now === undefined) {
    if (was !== undefined) context.emit('enum-value-added', path, `any value now, not only ${list(was)}`)
    return
  }
  if (was === undefined) {
    context.emit('type-narrowed', path, `now limited to ${list(now)}`)
    return
  }
  const key = (value: unknown) => JSON.stringify(value)
  const nowKeys = new Set(now.map(key))
  const wasKeys = new Set(was.map(key))
  for (const value of was) if (!nowKeys.has(key(value))) context.emit('enum-value-removed', path, `value ${key(value)} is no longer accepted (now ${list(now)})`)
  for (const value of now) if (!wasKeys.has(key(value))) context.emit('enum-value-added', path, `value ${key(value)} is now accepted`)
}

function compareBounds(b: Record<string, unknown>, a: Record<string, unknown>, context: SchemaContext, path: string): void {
  for (const [keyword] of lowerBounds) {
    const was = numberOr(b[keyword], 0)
    const now = numberOr(a[keyword], 0)
    if (now > was) context.emit('bound-tightened', path, `${keyword} ${show(b[keyword])} → ${now}`)
    else if (now < was) context.emit('bound-loosened', path, `${keyword} ${was} → ${show(a[keyword])}`)
  }
  for (const [keyword] of upperBounds) {
    const was = numberOr(b[keyword], Infinity)
    const now = numberOr(a[keyword], Infinity)
    if (now < was) context.emit('bound-tightened', path, `${keyword} ${show(b[keyword])} → ${now}`)
    else if (now > was) context.emit('bound-loosened', path, `${keyword} ${was} → ${show(a[keyword])}`)
  }
  const lowWas = lowerRange(b)
  const lowNow = lowerRange(a)
  const lowOrder = compareBound(lowNow, lowWas, 1)
  if (lowOrder > 0) context.emit('bound-tightened', path, `lower bound ${showRange(lowWas, '>')} → ${showRange(lowNow, '>')}`)
  else if (lowOrder < 0) context.emit('bound-loosened', path, `lower bound ${showRange(lowWas, '>')} → ${showRange(lowNow, '>')}`)
  const highWas = upperRange(b)
  const highNow = upperRange(a)
  const highOrder = compareBound(highNow, highWas, -1)
  if (highOrder > 0) context.emit('bound-tightened', path, `upper bound ${showRange(highWas, '<')} → ${showRange(highNow, '<')}`)
  else if (highOrder < 0) context.emit('bound-loosened', path, `upper bound ${showRange(highWas, '<')} → ${showRange(highNow, '<')}`)
  const multipleWas = b.multipleOf
  const multipleNow = a.multipleOf
  if (typeof multipleNow === 'number' && multipleNow !== multipleWas && !(typeof multipleWas === 'number' && isMultiple(multipleWas, multipleNow))) {
    context.emit('bound-tightened', path, `multipleOf ${show(multipleWas)} → ${multipleNow}`)
  } else if (typeof multipleWas === 'number' && multipleNow !== multipleWas) {
    context.emit('bound-loosened', path, `multipleOf ${multipleWas} → ${show(multipleNow)}`)
  }
  // Patterns and formats are not compared as languages: any new or changed one may refuse a value.
  for (const keyword of ['pattern', 'format'] as const) {
    const was = b[keyword]
    const now = a[keyword]
    if (now === was) continue
    if (now === undefined) context.emit('bound-loosened', path, `${keyword} ${show(was)} removed`)
    else context.emit('bound-tightened', path, `${keyword} ${show(was)} → ${show(now)}`)
  }
}

function compareObjects(b: Record<string, unknown>, a: Record<string, unknown>, context: SchemaContext, path: string): void {
  const wasProps = objectOf(b.properties)
  const nowProps = objectOf(a.properties)
  const wasRequired = new Set(stringsOf(b.required))
  const nowRequired = new Set(stringsOf(a.required))
  const wasExtra = b.additionalProperties
  const nowExtra = a.additionalProperties
  const closedBefore = wasExtra === false
  const closedAfter = nowExtra === false

  for (const [name, schema] of Object.entries(wasProps)) {
    const field = join(path, name)
    if (!(name in nowProps)) {
      context.emit('field-removed', field, `field ${name} was removed${closedAfter ? ' and is refused now' : ''}`)
      continue
    }
    if (!wasRequired.has(name) && nowRequired.has(name)) context.emit('field-made-required', field, `${name} was optional and is now required`)
    if (wasRequired.has(name) && !nowRequired.has(name)) context.emit('field-made-optional', field, `${name} was required and is now optional`)
    compareSchemas(schema, nowProps[name], context, field)
  }
  for (const [name, schema] of Object.entries(nowProps)) {
    if (name in wasProps) continue
    const field = join(path, name)
    if (nowRequired.has(name)) {
      context.emit('required-field-added', field, `new field ${name} is required: events without it are refused`)
      continue
    }
    context.emit('field-added', field, `new optional field ${name}`)
    // A field that was allowed under another schema (a record's values) keeps being compared.
    if (isSchema(wasExtra) && wasExtra !== true && !isEmptySchema(wasExtra)) compareSchemas(wasExtra, schema, context, field)
  }
  for (const name of nowRequired) {
    if (!wasRequired.has(name) && !(name in wasProps) && !(name in nowProps)) context.emit('required-field-added', join(path, name), `${name} is now required`)
  }

  if (!closedBefore && closedAfter) context.emit('additional-properties-closed', path, 'additionalProperties closed: fields not listed are refused now')
  else if (closedBefore && !closedAfter) context.emit('additional-properties-opened', path, 'additionalProperties opened: other fields are accepted now')
  else if (!closedBefore && !closedAfter && !(isEmptySchema(wasExtra ?? true) && isEmptySchema(nowExtra ?? true))) {
    // Open on both sides with a schema for the other fields (a record's values): compare those.
    compareSchemas(wasExtra ?? true, nowExtra ?? true, context, `${path}{}`)
  }
  if (b.propertyNames !== undefined || a.propertyNames !== undefined) compareSchemas(b.propertyNames ?? true, a.propertyNames ?? true, context, `${path}{key}`)
}

function compareArrays(b: Record<string, unknown>, a: Record<string, unknown>, context: SchemaContext, path: string): void {
  const wasTuple = Array.isArray(b.prefixItems) ? b.prefixItems : []
  const nowTuple = Array.isArray(a.prefixItems) ? a.prefixItems : []
  const positions = Math.max(wasTuple.length, nowTuple.length)
  for (let index = 0; index < positions; index++) {
    const was = index < wasTuple.length ? wasTuple[index] : (b.items ?? true)
    const now = index < nowTuple.length ? nowTuple[index] : (a.items ?? true)
    compareSchemas(was, now, context, `${path}[${index}]`)
  }
  if (b.items !== undefined || a.items !== undefined) compareSchemas(b.items ?? true, a.items ?? true, context, `${path}[]`)
}

/** `allOf` parts are compared position by position (zod emits them for intersections). */
function compareAllOf(b: Record<string, unknown>, a: Record<string, unknown>, context: SchemaContext, path: string): void {
  const was = Array.isArray(b.allOf) ? b.allOf : []
  const now = Array.isArray(a.allOf) ? a.allOf : []
  for (let index = 0; index < Math.max(was.length, now.length); index++) {
    compareSchemas(was[index] ?? true, now[index] ?? true, context, `${path}&${index}`)
  }
}

/**
 * Every option of the union before must be accepted by some option after. An option kept as it
 * was (no breaking change against some option after) is fine; otherwise the closest option after
 * of the same type is compared with it, so a field made required inside one option is named as
 * such; with none, the option was removed.
 */
function compareUnions(was: Schema[], now: Schema[], context: SchemaContext, path: string): void {
  const matched = new Set<number>()
  const label = was.length > 1 || now.length > 1
  for (const [index, option] of was.entries()) {
    const at = label && was.length > 1 ? `${path}|${index}` : path
    const trials = now.map((candidate) => trial(option, candidate, context, at))
    const kept = trials.findIndex((found) => found.breaking === 0)
    if (kept >= 0) {
      matched.add(kept)
      for (const change of trials[kept]!.changes) context.emit(change.rule, change.path, change.message)
      continue
    }
    // A discriminated option is matched by its discriminator's value; others by their type.
    const tag = discriminators(resolve(option, context.rootBefore))
    const tags = now.map((candidate) => discriminators(resolve(candidate, context.rootAfter)))
    const discriminated = [...tag.keys()].some((key) => tags.some((other) => other.has(key)))
    const closest = trials
      .map((found, position) => ({ found, position }))
      .filter(({ position }) =>
        discriminated
          ? [...tag].some(([key, value]) => tags[position]!.get(key) === value)
          : overlaps(resolve(option, context.rootBefore), resolve(now[position], context.rootAfter)),
      )
      .sort((x, y) => x.found.breaking - y.found.breaking)[0]
    if (closest) {
      matched.add(closest.position)
      for (const change of closest.found.changes) if (breakingSet.has(change.rule)) context.emit(change.rule, change.path, change.message)
    } else {
      context.emit('type-narrowed', at, `union option ${describeOption(option, context.rootBefore)} is no longer accepted`)
    }
  }
  for (const [index, option] of now.entries()) {
    if (!matched.has(index) && !was.some((old) => trial(old, option, context, path).breaking === 0)) {
      context.emit('type-widened', path, `union option ${describeOption(option, context.rootAfter)} is now accepted`)
    }
  }
}

function trial(before: unknown, after: unknown, context: SchemaContext, path: string): { breaking: number; changes: { rule: CompatibilityRule; path: string; message: string }[] } {
  const changes: { rule: CompatibilityRule; path: string; message: string }[] = []
  compareSchemas(before, after, { ...context, seen: new Set(context.seen), emit: (rule, at, message) => changes.push({ rule, path: at, message }) }, path)
  return { breaking: changes.filter((change) => breakingSet.has(change.rule)).length, changes }
}

// ── Schema reading ───────────────────────────────────────────────────────────────────────────

function isSchema(value: unknown): value is Schema {
  return typeof value === 'boolean' || (typeof value === 'object' && value !== null && !Array.isArray(value))
}

/** A schema with no keyword that constrains anything accepts every value. */
function isEmptySchema(value: unknown): boolean {
  if (value === true) return true
  if (!isSchema(value) || value === false) return false
  return Object.keys(value).every((key) => ['$schema', 'description', 'title', 'default', 'examples', '$comment', 'deprecated', 'readOnly', 'writeOnly', '$id'].includes(key))
}

function resolve(value: unknown, root: unknown, depth = 0): Schema {
  if (!isSchema(value)) return true
  if (typeof value === 'boolean') return value
  const ref = value.$ref
  if (typeof ref !== 'string' || depth > 32) return value
  const target = pointer(root, ref)
  if (target === undefined) return value
  const { $ref: _ref, ...rest } = value
  const resolved = resolve(target, root, depth + 1)
  return Object.keys(rest).length && typeof resolved === 'object' ? { ...resolved, ...rest } : resolved
}

function pointer(root: unknown, ref: string): unknown {
  if (ref === '#') return root
  if (!ref.startsWith('#/')) return undefined
  let node: unknown = root
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~')
    if (typeof node !== 'object' || node === null) return undefined
    node = (node as Record<string, unknown>)[key]
  }
  return node
}

function refPair(before: unknown, after: unknown): string | undefined {
  const ref = (value: unknown) => (isSchema(value) && typeof value === 'object' && typeof value.$ref === 'string' ? value.$ref : undefined)
  const b = ref(before)
  const a = ref(after)
  return b || a ? `${b ?? ''}|${a ?? ''}` : undefined
}

function unionOptions(schema: Record<string, unknown>): Schema[] | undefined {
  const options = Array.isArray(schema.anyOf) ? schema.anyOf : Array.isArray(schema.oneOf) ? schema.oneOf : undefined
  return options?.filter(isSchema)
}

function typeSet(schema: Record<string, unknown>): Set<string> | undefined {
  const type = schema.type
  if (typeof type === 'string') return new Set([type])
  if (Array.isArray(type)) return new Set(type.filter((t): t is string => typeof t === 'string'))
  if ('const' in schema) return new Set([jsonType(schema.const)])
  if (Array.isArray(schema.enum)) return new Set(schema.enum.map(jsonType))
  return undefined
}

function accepts(types: Set<string>, type: string): boolean {
  return types.has(type) || (type === 'integer' && types.has('number'))
}

function overlaps(before: Schema, after: Schema): boolean {
  if (typeof before === 'boolean' || typeof after === 'boolean') return true
  const was = typeSet(before)
  const now = typeSet(after)
  if (!was || !now) return true
  return [...was].some((type) => accepts(now, type) || (type === 'number' && now.has('integer')))
}

function jsonType(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number'
  return typeof value
}

function allowedValues(schema: Record<string, unknown>): unknown[] | undefined {
  if ('const' in schema) return [schema.const]
  if (Array.isArray(schema.enum)) return schema.enum
  return undefined
}

interface Bound {
  value: number
  exclusive: boolean
}

function lowerRange(schema: Record<string, unknown>): Bound | undefined {
  return tighter(bound(schema.minimum, false), bound(schema.exclusiveMinimum, true), 1)
}

function upperRange(schema: Record<string, unknown>): Bound | undefined {
  return tighter(bound(schema.maximum, false), bound(schema.exclusiveMaximum, true), -1)
}

/** zod bounds every `z.int()` to the safe integers: that says integer, not a range, so it is no bound here. */
function bound(value: unknown, exclusive: boolean): Bound | undefined {
  return typeof value === 'number' && Math.abs(value) !== Number.MAX_SAFE_INTEGER ? { value, exclusive } : undefined
}

function tighter(x: Bound | undefined, y: Bound | undefined, direction: 1 | -1): Bound | undefined {
  if (!x) return y
  if (!y) return x
  return compareBound(x, y, direction) >= 0 ? x : y
}

/** Positive when `x` is the tighter bound (higher for a lower bound, direction 1; lower for an upper one, -1). */
function compareBound(x: Bound | undefined, y: Bound | undefined, direction: 1 | -1): number {
  if (!x && !y) return 0
  if (!x) return -1
  if (!y) return 1
  if (x.value !== y.value) return (x.value - y.value) * direction > 0 ? 1 : -1
  return Number(x.exclusive) - Number(y.exclusive)
}

function showRange(value: Bound | undefined, sign: '>' | '<'): string {
  if (!value) return 'none'
  return `${sign}${value.exclusive ? '' : '='} ${value.value}`
}

function isMultiple(of: number, step: number): boolean {
  const ratio = of / step
  return Math.abs(ratio - Math.round(ratio)) < 1e-9
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' ? value : fallback
}

function objectOf(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {}
}

function stringsOf(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : []
}

function join(path: string, name: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(name) ? `${path}.${name}` : `${path}[${JSON.stringify(name)}]`
}

function show(value: unknown): string {
  return value === undefined ? 'none' : typeof value === 'string' ? JSON.stringify(value) : String(value)
}

function list(values: unknown[]): string {
  return values.map((value) => JSON.stringify(value)).join(', ')
}

/** The properties of an object schema that hold one constant: a discriminated union's tags. */
function discriminators(schema: Schema): Map<string, string> {
  const tags = new Map<string, string>()
  if (typeof schema === 'boolean') return tags
  for (const [key, property] of Object.entries(objectOf(schema.properties))) {
    if (isSchema(property) && typeof property === 'object' && 'const' in property) tags.set(key, JSON.stringify(property.const))
  }
  return tags
}

function describeOption(option: unknown, root: unknown): string {
  const schema = resolve(option, root)
  if (typeof schema === 'boolean') return String(schema)
  const tags = discriminators(schema)
  if (tags.size) return [...tags].map(([key, value]) => `${key}: ${value}`).join(', ')
  const values = allowedValues(schema)
  if (values) return list(values)
  const types = typeSet(schema)
  return types ? [...types].join(' | ') : JSON.stringify(schema)
}
