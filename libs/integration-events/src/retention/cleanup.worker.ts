import { Injectable, Logger } from '@nestjs/common';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { OutboxDatabase } from '../outbox/outbox-database';

/** Pause between two delete batches of one run, so a big backlog of old rows never hogs the database. */
const PAUSE_BETWEEN_BATCHES_MS = 50;

/**
 * Deletes sent outbox rows older than `outbox.retentionMs` and inbox rows older than `inbox.retentionMs`
 * (when the inbox table exists),
 * every `cleanup.intervalMs`, in batches of `cleanup.batchSize`. Each batch is one short statement that
 * skips rows locked by anyone else, so it never holds up the relay or another instance's cleanup.
 */
@Injectable()
export class CleanupWorker {
  private readonly logger = new Logger('IntegrationEvents:Cleanup');
  private timer: NodeJS.Timeout | undefined;
  /** Every run in progress, scheduled or asked for with `runOnce()`. */
  private readonly runs = new Set<Promise<unknown>>();
  /** Not scheduling runs (before `start()`, after `stop()`). */
  private stopped = true;
  /** Set while `stop()` waits: a run in progress ends after its current batch. */
  private interrupted = false;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly database: OutboxDatabase,
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  /** Stops scheduling and waits for the runs in progress (yours included) to end after their current batch. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.interrupted = true;
    try {
      // Runs started while this waits are interrupted too.
      while (this.runs.size > 0) await Promise.allSettled([...this.runs]);
    } finally {
      this.interrupted = false;
    }
  }

  /**
   * One full run: every old row goes, batch after batch (also with `cleanup.enabled: false`, for a
   * service that runs it on its own schedule). Returns how many rows were deleted.
   */
  runOnce(): Promise<{ outbox: number; inbox: number }> {
    const run = this.deleteOldRows();
    this.runs.add(run);
    void run.finally(() => this.runs.delete(run)).catch(() => undefined);
    return run;
  }

  private async deleteOldRows(): Promise<{ outbox: number; inbox: number }> {
    const { outbox, inbox, cleanup } = this.config.options;
    const deleted = { outbox: 0, inbox: 0 };
    deleted.outbox = await this.drain((limit) => this.database.store.deleteSent(outbox.retentionMs, limit), cleanup.batchSize);
    // The inbox table is only required where a handler uses it: a publish-only service may have none.
    // Where it exists it is cleaned, whatever `inbox.enabled` says: a handler may opt in on its own.
    // A stop() that came during the outbox's batches ends the run there: the inbox waits for the next.
    if (!this.interrupted && (await this.database.inboxTableExists()) && !this.interrupted) {
      deleted.inbox = await this.drain((limit) => this.database.inboxStore.deleteOlderThan(inbox.retentionMs, limit), cleanup.batchSize);
    }
    if (deleted.outbox + deleted.inbox > 0) {
      this.logger.log(`Deleted ${deleted.outbox} sent outbox row(s) and ${deleted.inbox} inbox row(s) past their retention`);
    }
    return deleted;
  }

  private async drain(deleteBatch: (limit: number) => Promise<number>, batchSize: number): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await deleteBatch(batchSize);
      total += deleted;
      if (deleted < batchSize || this.interrupted) return total;
      await new Promise((resolve) => setTimeout(resolve, PAUSE_BETWEEN_BATCHES_MS));
      // A stop() that came during the pause: the batch before it was the last.
      if (this.interrupted) return total;
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.runOnce()
        .catch((error: unknown) => this.logger.error(`Cleanup failed (will try again): ${(error as Error).message}`))
        .finally(() => this.schedule());
    }, this.config.options.cleanup.intervalMs);
    this.timer.unref();
  }
}
