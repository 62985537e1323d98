import type { Storage } from 'unstorage'
import { deadLetterBase, deadLetterKey, outboxId, outboxKeyOf } from '../storage/layout'
import type { Group } from './group'
import type { Pending } from './queue'
import type { DeadLetter, ForwardEntry, RefusedEvent } from './types'

/** The start of the sink's answer kept in a dead letter. */
const BODY_CHARS = 2048

/**
 * Dead letters: batches (or some events of batches) the sink refused for good, one record each
 * at `<prefix>:x:<outbox id>`, and how many there are (counted once at start, then kept).
 */
export class DeadLetters {
  /** Dead letters in storage, as this instance knows it. */
  private known = 0

  constructor(
    private readonly storage: Storage,
    private readonly prefix: string,
    private readonly io: <T>(step: Promise<T>, what: string) => Promise<T>,
  ) {}

  get count(): number {
    return this.known
  }

  /** Counts the dead letters in storage (at start). */
  async load(): Promise<void> {
    this.known = (await this.io(this.storage.getKeys(deadLetterBase(this.prefix)), 'list')).length
  }

  /** Writes the dead letters of a group the sink refused for good (with the status and answer). */
  async refused(group: Group, status: number, body: string, attempts: number): Promise<void> {
    const failedAt = Date.now()
    for (const pending of group.entries) {
      const letter = this.letterOf(pending, pending.events, { status, body, attempts, failedAt })
      // A batch sent in part (a requeued partial dead letter) stays in part.
      if (pending.only) letter.rejected = pending.only.map((index) => ({ index, errors: [] }))
      await this.write(letter)
    }
  }

  /** Writes the dead letters of the events a 2xx answer listed as rejected, by entry of the group. */
  async partial(group: Group, refused: ReadonlyMap<number, RefusedEvent[]>, status: number, body: string, attempts: number): Promise<void> {
    const failedAt = Date.now()
    for (const [entry, rejected] of refused) {
      const letter = this.letterOf(group.entries[entry]!, rejected.length, { status, body, attempts, failedAt })
      letter.rejected = rejected
      await this.write(letter)
    }
  }

  /** Every dead letter, oldest outbox id first. */
  async list(): Promise<DeadLetter[]> {
    const keys = (await this.io(this.storage.getKeys(deadLetterBase(this.prefix)), 'list')).sort()
    const letters: DeadLetter[] = []
    for (const key of keys) {
      const value = await this.io(this.storage.getItem<DeadLetter>(key), 'read')
      const letter = typeof value === 'string' ? (parseJson(value) as DeadLetter | null) : value
      if (letter) letters.push(letter)
    }
    return letters
  }

  /**
   * Moves dead letters (all, or those ids) back to the outbox, each as an entry that sends only
   * its refused events where it names them; `queue` is given each entry as soon as it is written
   * (a failure further on leaves those queued). Resolves with how many were moved.
   */
  async requeue(ids: readonly string[] | undefined, queue: (pending: Pending) => void): Promise<number> {
    const letters = (await this.list()).filter((letter) => !ids || ids.includes(letter.id))
    for (const letter of letters) {
      const key = outboxKeyOf(this.prefix, letter.id)
      const entry: ForwardEntry = { batch: letter.batch, events: letter.events, receivedAt: letter.receivedAt }
      if (Array.isArray(letter.rejected)) entry.only = letter.rejected.map((event) => event.index)
      await this.io(this.storage.setItem(key, JSON.stringify(entry)), 'write')
      await this.io(this.storage.removeItem(deadLetterKey(this.prefix, letter.id)), 'write')
      this.known = Math.max(0, this.known - 1)
      queue({ ...entry, key })
    }
    return letters.length
  }

  private letterOf(pending: Pending, events: number, failure: { status: number; body: string; attempts: number; failedAt: number }): DeadLetter {
    const { status, body, attempts, failedAt } = failure
    const id = outboxId(this.prefix, pending.key)
    return { id, batch: pending.batch, events, receivedAt: pending.receivedAt, status, body: body.slice(0, BODY_CHARS), attempts, failedAt }
  }

  private async write(letter: DeadLetter): Promise<void> {
    await this.io(this.storage.setItem(deadLetterKey(this.prefix, letter.id), JSON.stringify(letter)), 'write')
    this.known++
  }
}

/** Parsed JSON; null when the text is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}
