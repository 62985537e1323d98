// event-ingest/client: the producer's side, for Node 20+ and browsers. Nothing here imports the
// server's code at runtime: the model contributes types only.
export { createEventClient } from './client'
export { EventClientError } from './types'
export type { ClientEnvelope, ClientModel, EventClient, EventClientErrorCode, EventClientOptions, QueueStorage, RetryOptions, TrackOptions } from './types'
