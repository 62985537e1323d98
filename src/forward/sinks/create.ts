import type { ResolvedSinkOptions } from '../options'
import { DeliverSink } from './deliver'
import { HttpSink } from './http'
import { NatsSink } from './nats'
import { RedisStreamSink } from './redis-stream'
import type { Sink } from './types'

/** The sink of a sink type: the one place that maps `type` to its implementation. */
export function createSink(sink: ResolvedSinkOptions): Sink {
  switch (sink.type) {
    case 'redis-stream':
      return new RedisStreamSink(sink)
    case 'nats':
      return new NatsSink(sink)
    case 'deliver':
      return new DeliverSink(sink)
    default:
      return new HttpSink(sink)
  }
}
