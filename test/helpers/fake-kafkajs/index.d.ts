// Types of the kafkajs test double (index.js): the part of kafkajs's API the README's example uses.
export interface Message {
  key?: string
  value: string
  headers?: Record<string, string>
}
export interface Producer {
  connect(): Promise<void>
  disconnect(): Promise<void>
  send(record: { topic: string; acks?: number; messages: Message[] }): Promise<unknown>
}
export declare class Kafka {
  constructor(config: { clientId?: string; brokers: string[] })
  producer(options?: { idempotent?: boolean; maxInFlightRequests?: number }): Producer
}
