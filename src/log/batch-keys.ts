import { randomBytes } from 'node:crypto'
import { batchKey, batchKeyHead, batchSequence, claimValue, madeBy, outboxKey } from '../storage/layout'

/** The keys of one batch. */
export interface BatchNames {
  /** Its place among this log's batches (orders them by age). */
  seq: number
  batchKey: string
  /** Its claim value: names the batch and when it was claimed (`claimedAt`). */
  claim: string
  claimedAt: number
  outboxKey?: string
}

/**
 * Names the batches of one log. A token of the log is part of every batch key's sequence: a key
 * with it was made here, not by an earlier process with the same instance id, whatever the clocks
 * did meanwhile.
 */
export class BatchKeys {
  private readonly token = randomBytes(3).toString('hex')
  private sequence = 0
  // The key head of the last receive time: batches received in one millisecond share it.
  private headAt = Number.NaN
  private head = ''

  constructor(private readonly prefix: string, private readonly instanceId: string, private readonly outbox: boolean, private readonly now: () => number) {}

  /** The keys of the next batch, received at `receivedAt`, claimed now. */
  next(receivedAt: number): BatchNames {
    if (receivedAt !== this.headAt) {
      this.head = batchKeyHead(this.prefix, receivedAt, this.instanceId, this.token)
      this.headAt = receivedAt
    }
    const key = `${this.head}${batchSequence(this.sequence++)}`
    // A claim names its batch and when it was taken: its age, not the batch's receivedAt, decides
    // whether it is still in progress, stale or expired.
    const claimedAt = this.now()
    return { seq: this.sequence, batchKey: key, claim: claimValue(key, claimedAt), claimedAt, outboxKey: this.outbox ? outboxKey(this.prefix, key) : undefined }
  }

  /** A key of this log's naming, with no batch behind it (it names the log). */
  sample(): string {
    return batchKey(this.prefix, 0, this.instanceId, this.token, 0)
  }

  /** Whether this log made `key`. */
  mine(key: string): boolean {
    return madeBy(key, this.instanceId, this.token)
  }
}
