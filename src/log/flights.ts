import { IngestError } from '../base/errors'

/**
 * A batch being written by this process under the claim protocol. `seq` orders batches by age;
 * `changed`, made only when another batch waits on this one, settles when this one is `done`
 * (stored or failed) or lets go of its claims before that (see ClaimAppend).
 */
export interface Flight {
  seq: number
  /** The count of releases (in its log) when it last let go of its claims; 0 when it never did. */
  releasedAt: number
  done: boolean
  changed?: { promise: Promise<void>; resolve: () => void }
}

/** Wakes the batches waiting on `flight`. */
export function wake(flight: Flight): void {
  const changed = flight.changed
  flight.changed = undefined
  changed?.resolve()
}

/** Settles when `other` is stored, fails, or lets go of its claims; or after `ms`. */
export function whenSettled(other: Flight, ms: number): Promise<unknown> {
  // Done while the waiter was busy with something else: nothing left to wait for.
  if (other.done) return Promise.resolve()
  if (!other.changed) {
    let resolve!: () => void
    const promise = new Promise<void>((r) => (resolve = r))
    other.changed = { promise, resolve }
  }
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))
  return Promise.race([other.changed.promise, timeout]).finally(() => clearTimeout(timer))
}

/** 503 `in_progress` for a batch whose ids other requests are storing. */
export function batchBusy(): IngestError {
  return new IngestError('in_progress', 'events of this batch are being stored by other requests; retry shortly')
}

/** 503 `in_progress` for one id another request is storing. */
export function idBusy(id: string): IngestError {
  return new IngestError('in_progress', `event ${id} is being stored by another request; retry shortly`, { id })
}
