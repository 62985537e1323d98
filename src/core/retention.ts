import type { EventLog } from '../log/event-log'
import { withTimeout } from '../base/timeout'

/** What the retention prune needs: the log it prunes, how old a batch may get, how often to run. */
export interface RetentionSettings {
  log: EventLog
  retentionMs: number
  intervalMs: number
  /** Told of a failed run (the next one retries). */
  report: (error: unknown) => void
}

/**
 * The retention prune: one run at a time, on a timer that never keeps the process alive, stopped
 * by {@link RetentionPrune.stop} between two storage calls (a first run over a long backlog can
 * take a while).
 */
export class RetentionPrune {
  private timer: ReturnType<typeof setTimeout> | undefined
  /** The run under way. */
  private running: Promise<void> | undefined
  private stopped = false
  private readonly abort = new AbortController()

  constructor(private readonly settings: Readonly<RetentionSettings>) {}

  /** Runs after `delayMs`, then every `intervalMs` after each run ends, until stopped. */
  schedule(delayMs: number): void {
    const { log, retentionMs, intervalMs, report } = this.settings
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.running = log.prune({ olderThan: Date.now() - retentionMs, signal: this.abort.signal }).then(
        () => {},
        (error: unknown) => report(new Error(`retention prune failed (retried in ${intervalMs} ms): ${error instanceof Error ? error.message : String(error)}`, { cause: error })),
      ).finally(() => {
        this.running = undefined
        if (!this.stopped) this.schedule(intervalMs)
      })
    }, delayMs)
    this.timer.unref?.()
  }

  /** Stops the timer and tells the run under way to stop at its next storage call. */
  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.abort.abort()
  }

  /**
   * The end of the run under way, if any, waited for at most `waitMs`: a run stops at its next
   * storage call, which a hung driver may never answer.
   */
  settled(waitMs: number): Promise<void> | undefined {
    return this.running && withTimeout(this.running, waitMs, 'prune')
  }
}
