import type Redis from 'ioredis'
import type { Group } from '../group'
import type { ResolvedSinkOptions } from '../options'
import { DELIVERED, withoutCredentials, type Sink, type SinkOutcome } from './types'

/**
 * One entry per batch, appended once per idempotency key: the key is remembered for
 * `idempotencyWindowMs` in the same script, so a redelivery appends nothing. XADD trims by count
 * (`MAXLEN ~`); trimming by age is a second step (`XTRIM MINID ~`), since one XADD takes one rule.
 * KEYS: stream, remembered key. ARGV: window ms, maxLen (0: none), min id ('': none), key, events, body.
 * Returns the entry id, or the id of the earlier entry for a redelivery.
 */
const APPEND_ONCE = `
local earlier = redis.call('GET', KEYS[2])
if earlier then return earlier end
local id
if ARGV[2] ~= '0' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'key', ARGV[4], 'events', ARGV[5], 'body', ARGV[6])
else
  id = redis.call('XADD', KEYS[1], '*', 'key', ARGV[4], 'events', ARGV[5], 'body', ARGV[6])
end
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3]) end
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return id
`

type AppendClient = Redis & { appendOnce(stream: string, remembered: string, ...args: (string | number)[]): Promise<string> }

/**
 * Redis Streams: `XADD` of each group as one entry (`key`, `events`, `body`: the JSON array), once
 * per idempotency key. ioredis is loaded when the sink is first used; commands fail fast (a time
 * limit per attempt, no queueing while Redis is down) and the forwarder retries them.
 */
export class RedisStreamSink implements Sink {
  readonly name: string
  private client: Promise<AppendClient> | undefined

  constructor(private readonly sink: ResolvedSinkOptions) {
    this.name = `${withoutCredentials(sink.url)}#${sink.stream}`
  }

  async send(group: Group): Promise<SinkOutcome> {
    try {
      const client = await this.connect()
      const minId = this.sink.maxAgeMs > 0 ? String(Date.now() - this.sink.maxAgeMs) : ''
      const stream = this.sink.stream!
      await client.appendOnce(stream, `${stream}:delivered:${group.key}`, this.sink.idempotencyWindowMs, this.sink.maxLen, minId, group.key, group.events, group.body)
      return DELIVERED
    } catch (error) {
      return outcomeOf(error)
    }
  }

  abort(): void {}

  async close(): Promise<void> {
    const client = this.client
    this.client = undefined
    if (client) (await client.catch(() => undefined))?.disconnect()
  }

  private connect(): Promise<AppendClient> {
    this.client ??= (async () => {
      let RedisClient: typeof Redis
      try {
        RedisClient = (await import('ioredis')).default
      } catch (error) {
        throw new TypeError(`[event-ingest] a redis-stream sink needs the ioredis package: ${(error as Error).message}`)
      }
      const client = new RedisClient(this.sink.url, {
        lazyConnect: true,
        commandTimeout: this.sink.timeoutMs,
        connectTimeout: this.sink.timeoutMs,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        retryStrategy: (times) => Math.min(times * 100, 2000),
      }) as AppendClient
      // Failures reach the forwarder through the attempts; ioredis would print them unhandled.
      client.on('error', () => {})
      client.defineCommand('appendOnce', { numberOfKeys: 2, lua: APPEND_ONCE })
      try {
        await client.connect()
      } catch (error) {
        client.disconnect()
        throw error
      }
      return client
    })()
    // A failed connection is made again on the next attempt.
    this.client.catch(() => {
      this.client = undefined
    })
    return this.client
  }
}

/** A failed command as an attempt's outcome: a reply error is the sink's answer, anything else no answer. */
function outcomeOf(error: unknown): SinkOutcome {
  const message = String((error as Error | null)?.message ?? error)
  if (error instanceof TypeError && message.includes('needs the ioredis package')) return { kind: 'answer', status: 503, retryAfter: null, body: message }
  if ((error as Error | null)?.name === 'ReplyError') {
    // The stream key holds another type: no retry will change that.
    const status = message.startsWith('WRONGTYPE') ? 409 : 503
    return { kind: 'answer', status, retryAfter: null, body: message.slice(0, 1024) }
  }
  return { kind: 'failure', failure: /timed? ?out/i.test(message) ? 'timeout' : 'network' }
}
