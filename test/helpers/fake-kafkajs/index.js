// A test double of the kafkajs client, for the README's Kafka example only: `producer.send`
// appends each call to the JSON-lines file FAKE_KAFKA_LOG; the first FAKE_KAFKA_FAIL_FIRST calls
// throw as a broker that is not reachable would.
import { appendFileSync } from 'node:fs'

let calls = 0

export class Kafka {
  constructor(config) {
    this.config = config
  }

  producer(options) {
    return {
      options,
      async connect() {},
      async disconnect() {},
      async send(record) {
        calls++
        if (calls <= Number(process.env.FAKE_KAFKA_FAIL_FIRST ?? 0)) throw Object.assign(new Error('Connection error: connect ECONNREFUSED'), { type: 'NETWORK' })
        appendFileSync(process.env.FAKE_KAFKA_LOG, `${JSON.stringify({ call: calls, ...record })}\n`)
        return [{ topicName: record.topic, partition: 0, errorCode: 0 }]
      },
    }
  }
}
