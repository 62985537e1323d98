import type { JetStreamClient, NatsConnection } from 'nats'
import type { Group } from '../group'
import type { ResolvedSinkOptions } from '../options'
import { DELIVERED, withoutCredentials, type Sink, type SinkOutcome } from './types'

/**
 * NATS JetStream: each group published once on `subject` with `Nats-Msg-Id` set to its
 * idempotency key, so the stream's duplicate window drops a redelivery; the publish ack is the
 * success. The `nats` package is loaded when the sink is first used.
 */
export class NatsSink implements Sink {
  readonly name: string
  private connection: Promise<{ nc: NatsConnection; js: JetStreamClient }> | undefined

  constructor(private readonly sink: ResolvedSinkOptions) {
    this.name = `${withoutCredentials(sink.url)}#${sink.subject}`
  }

  async send(group: Group): Promise<SinkOutcome> {
    try {
      const { js } = await this.connect()
      await js.publish(this.sink.subject!, new TextEncoder().encode(group.body), { msgID: group.key, timeout: this.sink.timeoutMs })
      return DELIVERED
    } catch (error) {
      return outcomeOf(error)
    }
  }

  abort(): void {}

  async close(): Promise<void> {
    const connection = this.connection
    this.connection = undefined
    const nc = connection && (await connection.catch(() => undefined))?.nc
    if (nc && !nc.isClosed()) await nc.close().catch(() => {})
  }

  private connect(): Promise<{ nc: NatsConnection; js: JetStreamClient }> {
    this.connection ??= (async () => {
      let nats: typeof import('nats')
      try {
        nats = await import('nats')
      } catch (error) {
        throw new TypeError(`[event-ingest] a nats sink needs the nats package: ${(error as Error).message}`)
      }
      const nc = await nats.connect({ servers: this.sink.url, timeout: this.sink.timeoutMs, reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 500 })
      try {
        if (this.sink.createStream) {
          const jsm = await nc.jetstreamManager({ timeout: this.sink.timeoutMs })
          const name = this.sink.createStream
          const found = await jsm.streams.info(name).then(() => true, (error: { code?: string; api_error?: { err_code?: number } }) => {
            if (error?.api_error?.err_code === 10059 || error?.code === '404') return false
            throw error
          })
          if (!found) await jsm.streams.add({ name, subjects: [this.sink.subject!] })
        }
        return { nc, js: nc.jetstream({ timeout: this.sink.timeoutMs }) }
      } catch (error) {
        await nc.close().catch(() => {})
        throw error
      }
    })()
    this.connection.catch(() => {
      this.connection = undefined
    })
    return this.connection
  }
}

/**
 * A failed publish as an attempt's outcome. No responders (no stream captures the subject, or
 * JetStream is not enabled) is retried: the stream may be created meanwhile. Bad subjects,
 * payloads too large and permission errors are refused for good (dead letters).
 */
function outcomeOf(error: unknown): SinkOutcome {
  const code = String((error as { code?: unknown } | null)?.code ?? '')
  const message = String((error as Error | null)?.message ?? error).slice(0, 1024)
  if (message.includes('needs the nats package')) return { kind: 'answer', status: 503, retryAfter: null, body: message }
  if (code === '503') return { kind: 'answer', status: 503, retryAfter: null, body: `no JetStream stream answers on the subject: ${message}` }
  if (code === 'TIMEOUT' || code === '408' || code === 'CONNECTION_TIMEOUT') return { kind: 'failure', failure: 'timeout' }
  if (['BAD_SUBJECT', 'MAX_PAYLOAD_EXCEEDED', 'PERMISSIONS_VIOLATION', 'BAD_PAYLOAD', 'BAD_HEADER'].includes(code)) {
    return { kind: 'answer', status: 400, retryAfter: null, body: message }
  }
  const apiCode = (error as { api_error?: { code?: number } } | null)?.api_error?.code
  if (typeof apiCode === 'number' && apiCode >= 400 && apiCode < 500) return { kind: 'answer', status: apiCode, retryAfter: null, body: message }
  return { kind: 'failure', failure: 'network' }
}
