import { createHash } from 'node:crypto'
import type { Storage } from 'unstorage'
import { IngestError } from '../base/errors'
import { checkKeys, checkNumber, checkObject, shown } from '../base/option-checks'
import { withTimeout } from '../base/timeout'
import { claimBackend } from '../storage/capabilities'
import { rateLimitBase } from '../storage/layout'

// The rate limits of the ingest route: what they count, the client address they key on, and the
// limiter that counts (rate-limiter-flexible: on the storage's Redis client, shared by every
// instance, else in this process's memory).

/** One limit: at most `points` within a fixed window of `durationSeconds`. */
export interface RateLimitRule {
  /** Points allowed per window (requests, or events for `perSource`); a whole number. */
  points: number
  /** The window, in whole seconds; it starts at a key's first point. */
  durationSeconds: number
}

/** The `rateLimits` option of `createEventIngest`. Each limit is off unless given. */
export interface RateLimitOptions {
  /** Ingest requests per client address (see `trustProxy`), counted before the token is checked. */
  perAddress?: RateLimitRule
  /** Ingest requests per valid ingest token, counted once the token is checked. Needs `token`. */
  perToken?: RateLimitRule
  /** Ingest requests per publishable key (by its public `id`), counted once the key is accepted. Needs `publishableKeys`. */
  perKey?: RateLimitRule
  /** Events per source (`storefront`, `bot`, …), summed over every producer; counted once the body is parsed. */
  perSource?: RateLimitRule
  /**
   * Whether the client address is read from `X-Forwarded-For`: `false` takes the socket's peer;
   * `true` the leftmost entry (anyone can write it: only behind a proxy that overwrites the
   * header); a number `n`, the address `n` hops in from the socket (1: the entry the nearest proxy
   * added).
   * @default false
   */
  trustProxy?: boolean | number
}

/** The names of the limits, as the 429 body and the stats name them. */
export const rateLimitNames = ['perAddress', 'perToken', 'perKey', 'perSource'] as const
export type RateLimitName = (typeof rateLimitNames)[number]

/** {@link RateLimitOptions} checked; frozen. */
export interface ResolvedRateLimits {
  readonly perAddress: Readonly<RateLimitRule> | undefined
  readonly perToken: Readonly<RateLimitRule> | undefined
  readonly perKey: Readonly<RateLimitRule> | undefined
  readonly perSource: Readonly<RateLimitRule> | undefined
  /** `0`: the socket's peer; `Infinity`: the leftmost `X-Forwarded-For` entry; `n`: `n` hops in. */
  readonly trustedHops: number
}

/** What each limit counts, for messages. */
const unitOf: Record<RateLimitName, string> = { perAddress: 'requests', perToken: 'requests', perKey: 'requests', perSource: 'events' }

/**
 * Checks the `rateLimits` option and returns it resolved; `undefined` when no limit is set. A bad
 * value throws naming the field. `open` says whether ingest takes no token (then `perToken` has
 * nothing to count, which is a mistake worth saying).
 */
export function resolveRateLimits(option: unknown, open: boolean, defaults: { readonly trustProxy: boolean | number }, keyed = false): ResolvedRateLimits | undefined {
  if (option === undefined || option === false) return undefined
  checkObject('rateLimits', option)
  const value = option as RateLimitOptions
  checkKeys('rateLimits', value, [...rateLimitNames, 'trustProxy'])
  for (const name of rateLimitNames) {
    const rule = value[name]
    checkObject(`rateLimits.${name}`, rule)
    if (rule === undefined) continue
    checkKeys(`rateLimits.${name}`, rule, ['points', 'durationSeconds'])
    for (const field of ['points', 'durationSeconds'] as const) {
      if (rule[field] === undefined) throw new TypeError(`[event-ingest] rateLimits.${name}.${field} is required (a positive integer)`)
      checkNumber(`rateLimits.${name}.${field}`, rule[field], { integer: true })
    }
  }
  const trust = (value.trustProxy ?? defaults.trustProxy) as unknown
  if (trust !== undefined && typeof trust !== 'boolean' && !(typeof trust === 'number' && Number.isSafeInteger(trust) && trust >= 0)) {
    throw new (typeof trust === 'number' ? RangeError : TypeError)(`[event-ingest] rateLimits.trustProxy must be true, false or a number of proxy hops (a non-negative integer), got ${shown(trust)}`)
  }
  if (value.perToken && open) {
    throw new TypeError('[event-ingest] rateLimits.perToken is set but ingest takes no token (set token or EVENT_INGEST_TOKEN): there is no token to count')
  }
  if (value.perKey && !keyed) {
    throw new TypeError('[event-ingest] rateLimits.perKey is set but no publishable key is configured (publishableKeys or EVENT_PUBLISHABLE_KEYS): there is no key to count')
  }
  if (!value.perAddress && !value.perToken && !value.perKey && !value.perSource) return undefined
  const rule = (name: RateLimitName) => value[name] && Object.freeze({ points: value[name]!.points, durationSeconds: value[name]!.durationSeconds })
  return Object.freeze({
    perAddress: rule('perAddress'),
    perToken: rule('perToken'),
    perKey: rule('perKey'),
    perSource: rule('perSource'),
    trustedHops: trust === true ? Number.POSITIVE_INFINITY : typeof trust === 'number' ? trust : 0,
  })
}

/**
 * The client's address: the socket's peer (`remote`), or with `trustedHops` the entry of
 * `X-Forwarded-For` that many hops in from it (the leftmost when the header holds fewer).
 * IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are read as IPv4, so one client has one key.
 */
export function clientAddress(remote: string | undefined, forwardedFor: string | undefined, trustedHops: number): string | undefined {
  if (trustedHops > 0 && forwardedFor) {
    const chain = forwardedFor.split(',').map((hop) => hop.trim()).filter((hop) => hop !== '')
    if (chain.length > 0) {
      // [client, proxy 1, …, nearest proxy's peer] then the socket: n hops in from the socket.
      const index = trustedHops === Number.POSITIVE_INFINITY ? 0 : Math.max(0, chain.length - trustedHops)
      return normaliseAddress(chain[index]!)
    }
  }
  return remote === undefined || remote === '' ? undefined : normaliseAddress(remote)
}

function normaliseAddress(address: string): string {
  let text = address.toLowerCase()
  if (text.startsWith('[') && text.includes(']')) text = text.slice(1, text.indexOf(']'))
  if (/^::ffff:\d+\.\d+\.\d+\.\d+$/.test(text)) text = text.slice(7)
  // A key, not an address book: a forged header cannot make one longer than an IPv6 address.
  return text.slice(0, 64)
}

/** A token's key: a digest, so no secret is written to the store. */
export function tokenKey(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 32)
}

/**
 * The events of a parsed batch per source, as sent (valid or not): the events `perSource` counts.
 * Anything but an array, an event that is not an object, or a source that is not a string
 * counts nothing (validation rejects them).
 */
export function eventsPerSource(batch: unknown): Map<string, number> {
  const counts = new Map<string, number>()
  if (!Array.isArray(batch)) return counts
  for (const event of batch) {
    const source = typeof event === 'object' && event !== null ? (event as { source?: unknown }).source : undefined
    if (typeof source === 'string' && source.length <= 64) counts.set(source, (counts.get(source) ?? 0) + 1)
  }
  return counts
}

/** Told of what the limiter sees, for stats; and how long a check may wait for the shared store. */
export interface RateLimitHooks {
  /** A check Redis has not answered within this many ms is counted in memory instead (`storageTimeoutMs`). */
  timeoutMs: number
  /** A request refused by `limit`. */
  onRefused(limit: RateLimitName): void
  /**
   * The shared store failed a check; it was counted in this process's memory instead. `first`:
   * the first failure since the store last answered (an outage is reported once).
   */
  onStoreError(error: unknown, first: boolean): void
}

/** The opened limits: each check consumes points, or throws a 429 `rate_limited` naming the limit. */
export interface RateLimiter {
  readonly settings: ResolvedRateLimits
  /** Where the counts are kept: `redis` (shared by every instance on that Redis) or `memory` (this process). */
  readonly store: 'redis' | 'memory'
  /**
   * Consumes `points` of `limit` for `key`; throws `rate_limited` when that is over the limit
   * (and, with `giveBackIfRefused`, gives those points back first, so a refused batch of many
   * events does not use up what smaller ones could still take). Resolves with where they were
   * counted: `shared` (Redis), or `local` (this process's memory, as on memory and fs storage, or
   * while Redis fails).
   */
  consume(limit: RateLimitName, key: string, points: number, options?: { subject?: string; giveBackIfRefused?: boolean }): Promise<CountedIn>
  /** Gives back points consumed (where they were counted) for a request another limit refused after all. */
  reward(limit: RateLimitName, key: string, points: number, countedIn: CountedIn): Promise<void>
}

/** Where a check's points were counted. */
export type CountedIn = 'shared' | 'local'

interface Counter {
  consume(key: string, points: number): Promise<unknown>
  reward(key: string, points: number): Promise<unknown>
}

type Library = typeof import('rate-limiter-flexible')

/** rate-limiter-flexible, an optional peer dependency: loaded only when a limit is set. */
export type RateLimitLibrary = Library

/** Loads rate-limiter-flexible; a clear error naming the package when it is not installed. */
export async function loadRateLimitLibrary(): Promise<RateLimitLibrary> {
  try {
    const loaded = (await import('rate-limiter-flexible')) as Library & { default?: Library }
    return loaded.RateLimiterMemory ? loaded : loaded.default!
  } catch (error) {
    const code = (error as { code?: unknown }).code
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new Error('[event-ingest] rateLimits needs the "rate-limiter-flexible" package, which is not installed: npm install rate-limiter-flexible', { cause: error })
    }
    throw new Error(`[event-ingest] rateLimits: the "rate-limiter-flexible" package failed to load: ${(error as Error).message}`, { cause: error })
  }
}

/**
 * Opens the limiter of `settings`: on a Redis storage, counters in Redis under the log's prefix
 * (`<base>:<prefix>:r:<limit>:<key>`, one script call per check), shared by every instance on it;
 * on any other storage, in this process's memory. A check Redis fails (down, or no answer within
 * `hooks.timeoutMs`) is counted in memory instead, per instance, and reported: the limits still
 * hold, per instance, and ingest goes on.
 */
export function openRateLimiter(library: RateLimitLibrary, settings: ResolvedRateLimits, storage: Storage, prefix: string, hooks: RateLimitHooks): RateLimiter {
  const backend = claimBackend(storage, rateLimitBase(prefix, ''))
  const store = backend.kind === 'redis' ? 'redis' : 'memory'
  const counters = new Map<RateLimitName, { shared: Counter | undefined; local: Counter }>()
  for (const name of rateLimitNames) {
    const rule = settings[name]
    if (!rule) continue
    const base = { points: rule.points, duration: rule.durationSeconds }
    const local = new library.RateLimiterMemory({ ...base, keyPrefix: name })
    const shared = backend.kind === 'redis'
      ? new library.RateLimiterRedis({ ...base, storeClient: backend.client, keyPrefix: backend.fullKey(rateLimitBase(prefix, name)), rejectIfRedisNotReady: true })
      : undefined
    counters.set(name, { shared, local })
  }
  // Reported once per outage of the store, not once per request.
  let failing = false

  function refusal(name: RateLimitName, refused: { msBeforeNext?: number }, points: number, subject: string | undefined): IngestError {
    const rule = settings[name]!
    const retryAfterSeconds = Math.max(1, Math.ceil((refused.msBeforeNext ?? rule.durationSeconds * 1000) / 1000))
    const what = subject === undefined ? '' : ` from source ${JSON.stringify(subject)}`
    const over = points > rule.points ? `; this batch alone has ${points} events${what}, more than the limit allows` : ''
    hooks.onRefused(name)
    return new IngestError('rate_limited', `rate limit ${name}: ${rule.points} ${unitOf[name]} per ${rule.durationSeconds} s${what}${over}; retry in ${retryAfterSeconds} s`, {
      limit: name,
      points: rule.points,
      durationSeconds: rule.durationSeconds,
      ...(subject === undefined ? {} : { source: subject }),
      retryAfterSeconds,
    })
  }

  async function consume(name: RateLimitName, key: string, points: number, options: { subject?: string; giveBackIfRefused?: boolean } = {}): Promise<CountedIn> {
    const counter = counters.get(name)
    if (!counter) return 'local'
    let place: CountedIn = counter.shared ? 'shared' : 'local'
    try {
      try {
        if (!counter.shared) {
          await counter.local.consume(key, points)
          return 'local'
        }
        await withTimeout(counter.shared.consume(key, points), hooks.timeoutMs, 'rate limit check')
        failing = false
        return 'shared'
      } catch (error) {
        // rate-limiter-flexible rejects with an Error when the store failed, with its result when over.
        if (!(error instanceof Error) || !counter.shared) throw error
        hooks.onStoreError(error, !failing)
        failing = true
        place = 'local'
      }
      await counter.local.consume(key, points)
      return 'local'
    } catch (refused) {
      if (refused instanceof Error) throw refused
      // rate-limiter-flexible counts a refused consume too.
      if (options.giveBackIfRefused) await reward(name, key, points, place)
      throw refusal(name, refused as { msBeforeNext?: number }, points, options.subject)
    }
  }

  async function reward(name: RateLimitName, key: string, points: number, countedIn: CountedIn): Promise<void> {
    const counter = counters.get(name)
    if (!counter) return
    // Best effort: points a failing store cannot give back expire with their window.
    if (countedIn === 'shared' && counter.shared) await withTimeout(counter.shared.reward(key, points), hooks.timeoutMs, 'rate limit reward').catch(() => {})
    else await counter.local.reward(key, points)
  }

  return { settings, store, consume, reward }
}

/**
 * The checks of one ingest request, in the order the handler makes them: the address before the
 * token is checked, the token once it is known valid, the sources once the body is parsed. Each
 * resolves when within its limit and throws `rate_limited` when not. `limiter` is the opened
 * limiter, or a promise of it while storage opens.
 */
export function createRequestLimits(settings: ResolvedRateLimits, limiter: () => RateLimiter | Promise<RateLimiter>) {
  return {
    /** One request of the client at `remote` (or the address `X-Forwarded-For` names, as trusted); an unknown address is not limited. */
    async address(remote: string | undefined, forwardedFor: string | undefined): Promise<void> {
      if (!settings.perAddress) return
      const address = clientAddress(remote, forwardedFor, settings.trustedHops)
      if (address !== undefined) await (await limiter()).consume('perAddress', address, 1)
    },
    /** One request made with the publishable key of public id `id` (an accepted one). */
    async key(id: string): Promise<void> {
      if (settings.perKey) await (await limiter()).consume('perKey', id, 1)
    },
    /** One request made with `token` (a valid one). */
    async token(token: string): Promise<void> {
      if (settings.perToken) await (await limiter()).consume('perToken', tokenKey(token), 1)
    },
    /**
     * Every event of `batch` against its source's limit. A refused batch takes nothing: neither
     * from the source it is refused for nor from its other sources.
     */
    async sources(batch: unknown): Promise<void> {
      if (!settings.perSource) return
      const counts = eventsPerSource(batch)
      if (counts.size === 0) return
      const opened = await limiter()
      const taken: [string, number, CountedIn][] = []
      try {
        for (const [source, events] of counts) taken.push([source, events, await opened.consume('perSource', source, events, { subject: source, giveBackIfRefused: true })])
      } catch (error) {
        await Promise.all(taken.map(([source, events, countedIn]) => opened.reward('perSource', source, events, countedIn)))
        throw error
      }
    },
  }
}

/** The checks {@link createRequestLimits} makes. */
export type RequestLimits = ReturnType<typeof createRequestLimits>
