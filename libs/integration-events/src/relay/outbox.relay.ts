import { randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { SpanKind, trace, type Context, type Span } from '@opentelemetry/api';
import { MessageHeaders } from '../envelope/message-headers';
import type { OutgoingMessage } from '../envelope/outgoing-message';
import { TransportNotReadyError } from '../errors/transport-not-ready.error';
import type { ClaimedOutboxRecord, FailedOutboxRecord } from '../outbox/outbox-record';
import { OutboxDatabase } from '../outbox/outbox-database';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { TransportHost } from '../transport/transport-host';
import { IntegrationEventsMetrics } from '../telemetry/integration-events.metrics';
import { INSTRUMENTATION_NAME, TelemetryAttributes as A } from '../telemetry/telemetry-attributes';
import { extractTraceContext, withTraceContext } from '../telemetry/trace-context';
import { endSpanGuarded, startSpanGuarded } from '../telemetry/guarded-tracing';
import { ConfirmedRows, type MarkSet } from './confirmed-rows';
import { exponentialBackoff } from './retry-delay';
import { RelayHandoff } from './relay-handoff';
import { WakeSignal } from './wake-signal';

/** How many batches of handed-over rows may wait for the relay before `publish()` stops leasing rows. */
const HANDOFF_BATCHES = 10;

/**
 * How long a confirmed row may wait for its mark, so that the rows confirmed after it are marked by the
 * same statement: at a few hundred events a second the relay publishes batches of one or a few rows, and
 * one UPDATE (with its commit) per batch would cost more than the rest of the relay's work. A timer
 * starts the marks when the oldest row has waited this long, whatever the loop is doing (a publish
 * waiting for slow confirms included). Rows stay leased meanwhile; the shortest lease allowed
 * (`relay.leaseMs`, 1 s) is twenty times longer.
 */
const MARK_LINGER_MS = 50;

/**
 * Moves committed outbox rows to the broker: claim a batch (`FOR UPDATE SKIP LOCKED` + lease), publish
 * it on the confirm channel, then mark each row by what the broker said (the confirmed rows of small
 * batches in a row together, within `MARK_LINGER_MS`). Rows this process commits are handed over at the
 * commit, already leased (`RelayHandoff`), and need no claim; rows committed elsewhere, delayed or to be
 * retried are claimed by a poll. A row is marked sent only after its confirm; a failed row stays
 * pending with its error and comes back after a backoff; an unroutable row is flagged and left for an
 * operator. Nothing here can stop the loop but `stop()`.
 */
@Injectable()
export class OutboxRelay {
  private readonly logger = new Logger('IntegrationEvents:Relay');
  private loop: Promise<void> | undefined;
  private stopping = false;
  /** Confirmed rows waiting for their mark (at most `MARK_LINGER_MS`, or until a batch's worth). */
  private readonly confirmed = new ConfirmedRows();
  /** Starts the marks of the rows in `confirmed` once the oldest has waited `MARK_LINGER_MS`. */
  private markTimer: NodeJS.Timeout | undefined;
  /** Every set of marks started so far, one after the other; never rejects (see `markFailure`). */
  private marks: Promise<void> = Promise.resolve();
  /** The first mark failure the loop has not yet been told of. */
  private markFailure: { error: unknown } | undefined;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly database: OutboxDatabase,
    private readonly transports: TransportHost,
    private readonly wakeSignal: WakeSignal,
    private readonly metrics: IntegrationEventsMetrics,
    private readonly handoff: RelayHandoff,
  ) {}

  private readonly tracer = trace.getTracer(INSTRUMENTATION_NAME);
  /** Releases of handed-over rows refused after a stop, still running (see `releasesSettled`). */
  private readonly releasing = new Set<Promise<void>>();

  get isRunning(): boolean {
    return this.loop !== undefined;
  }

  start(): void {
    const stopPending = this.stopping;
    this.stopping = false;
    if (this.loop) {
      // Started again while a stop() is pending: the loop carries on if it has not left its rounds yet;
      // if it has (it is marking its last batch, closing the handoff), a new one starts once it ends.
      if (stopPending) {
        const restart = (): void => {
          if (!this.stopping && !this.loop) this.start();
        };
        void this.loop.then(restart, restart);
      }
      return;
    }
    this.loop = this.run().finally(() => (this.loop = undefined));
  }

  /** Stops after the batch in flight (if any) has been published and marked. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeSignal.notify();
    await this.loop;
  }

  /**
   * Waits for the releases of rows committed after the relay stopped (HTTP requests finishing during
   * shutdown, say), so that they end before the DataSource closes and other instances can claim the
   * rows at once instead of after their lease.
   */
  async releasesSettled(): Promise<void> {
    while (this.releasing.size > 0) await Promise.all([...this.releasing]);
  }

  private track(release: Promise<void>): void {
    this.releasing.add(release);
    void release.finally(() => this.releasing.delete(release));
  }

  /** Wakes the relay now instead of at the next poll. */
  wake(): void {
    this.wakeSignal.notify();
  }

  private async run(): Promise<void> {
    const { batchSize, pollIntervalMs, leaseMs } = this.config.options.relay;
    this.handoff.open({
      leaseMs,
      capacity: batchSize * HANDOFF_BATCHES,
      canPublish: () => !this.stopping && this.transports.transport.canPublish,
      onHandedOff: () => this.wakeSignal.ring(),
      onRefused: (records) => this.track(this.releaseQuietly(records.map((record) => record.id))),
    });
    let failures = 0;
    // The first round claims whatever is due; after that, a claim every poll interval, or sooner when
    // asked (rows this process wrote without a lease, a full batch, a released handoff).
    let lastClaimAt = -Infinity;
    let claimAfterFailure = false;
    try {
      while (!this.stopping) {
        try {
          if (!this.transports.transport.canPublish) {
            // Rows handed over wait for no one: their lease goes, so that an instance that can publish
            // claims them now (this one too, once its connection is back).
            const held = this.handoff.take(Infinity);
            if (held.length > 0) {
              await this.releaseQuietly(held.map(({ record }) => record.id));
              this.wakeSignal.notify();
            }
            // Rows confirmed before the connection went are marked now, not when it comes back.
            await this.settleMarks();
            await this.wakeSignal.wait(pollIntervalMs);
            continue;
          }
          // After a failed round, marks that failed go first: a row whose lease has run out meanwhile would
          // otherwise be claimed, and sent, again. (A mark tried again that fails again does not fail the round.)
          if (claimAfterFailure && this.confirmed.retrying > 0) await this.settleMarks();
          if (this.handoff.size > 0) await this.relayHandedOff();
          let more = this.handoff.size > 0;
          if (this.wakeSignal.takeClaimRequest() || claimAfterFailure || performance.now() - lastClaimAt >= pollIntervalMs) {
            lastClaimAt = performance.now();
            claimAfterFailure = false;
            // On SQLite the claim may wait behind an application's transaction, and marks due or under
            // way (each of a set waits for the one before) would wait behind the claim: a transaction
            // outlasting the lease would let the claim take confirmed rows again. Every mark goes first
            // (they wait for that transaction all the same).
            if (this.database.sqlite) await this.settleMarks();
            if ((await this.relayClaimed()) === batchSize) {
              this.wakeSignal.notify();
              more = true;
            }
          }
          // Nothing more right now: rows confirmed in the last moments wait a little for the next ones,
          // to share their mark; then, going idle, every mark is written (a failure counts as this round's).
          const lingering = this.confirmed.size > 0 ? MARK_LINGER_MS - this.confirmed.age() : 0;
          if (!more && lingering > 0) {
            await this.wakeSignal.wait(lingering);
            continue;
          }
          if (!more) await this.settleMarks();
          failures = 0;
          if (!more) await this.wakeSignal.wait(Math.max(0, lastClaimAt + pollIntervalMs - performance.now()));
        } catch (error) {
          failures++;
          const delay = exponentialBackoff(failures, pollIntervalMs, 30_000);
          this.logger.error(`Relay round failed (retrying in ${delay} ms): ${(error as Error).message}`);
          // Whatever was not marked is still in the outbox: look there after the pause.
          claimAfterFailure = true;
          // The claim waits out the whole pause, though commits ring meanwhile (the claim that failed
          // must not run again at their rate); a claim request stays pending. Only a stop cuts it short.
          const until = performance.now() + delay;
          let handOffFailed = false;
          while (!this.stopping && performance.now() < until) {
            await this.wakeSignal.wait(until - performance.now());
            // Rows this process hands over go out meanwhile, all of them (the claim that failed, and
            // marks put back, wait out the pause): they would go stale waiting, and then need that claim.
            // Once that fails too, no more is sent before the pause ends. Only until it ends: commits that
            // keep coming would otherwise keep the handoff from emptying, and hold off the claim for good.
            while (
              !handOffFailed &&
              !this.stopping &&
              performance.now() < until &&
              this.handoff.size > 0 &&
              this.transports.transport.canPublish
            ) {
              await this.relayHandedOff().catch((handoffError: unknown) => {
                handOffFailed = true;
                this.logger.error(`Sending handed-over rows during the relay's pause failed: ${(handoffError as Error).message}`);
              });
            }
            if (!this.stopping && (handOffFailed || !this.transports.transport.canPublish)) {
              // Rows handed over that cannot go out from here before the pause ends: their lease goes, so
              // that an instance that can publish claims them now (this one, once the pause is over).
              const held = this.handoff.take(Infinity);
              if (held.length > 0) await this.releaseQuietly(held.map(({ record }) => record.id));
            }
          }
        }
      }
    } finally {
      // The in-flight batch is done only when its rows are marked.
      await this.settleMarks().catch((error: unknown) =>
        this.logger.error(`Marking the last batch failed; its rows go out again when their lease ends: ${(error as Error).message}`),
      );
      // Rows handed over but not published: give their lease up, so that any relay takes them at once.
      const left = this.handoff.close();
      if (left.length > 0) await this.releaseQuietly(left.map(({ record }) => record.id));
    }
  }

  /**
   * Publishes a batch of rows handed over by `publish()` after their commit: no claim, they are held
   * under the handoff's lease already, which began at the insert. A row with too little of it left (a
   * long transaction, a slow broker) is released instead and claimed like any other, so it is never
   * published on a lease that may run out before its mark.
   */
  private async relayHandedOff(): Promise<void> {
    const { batchSize, leaseMs, confirmTimeoutMs } = this.config.options.relay;
    // Fresh while the publish may take its whole confirmTimeoutMs and still leave a quarter of the lease
    // (and the marks' linger) for the mark, and at most half the lease gone: a claimed row, whose lease
    // begins at the claim, has at least half of it left when its confirm deadline passes.
    const freshForMs = Math.min(leaseMs / 2, leaseMs - confirmTimeoutMs - MARK_LINGER_MS - leaseMs / 4);
    // Monotonic: a wall clock stepped back would make an expired lease look fresh.
    const isFresh = (leasedAt: number): boolean => performance.now() - leasedAt < freshForMs;
    const taken = this.handoff.take(batchSize);
    const stale = taken.filter(({ leasedAt }) => !isFresh(leasedAt)).map(({ record }) => record.id);
    if (stale.length > 0) {
      try {
        await withRetries(() => this.database.store.release(stale, this.handoff.token));
        this.logger.debug(
          `Released ${stale.length} handed-over row(s) whose lease was too far gone at their commit, or which a ROLLBACK ` +
            'sent as SQL may have undone; those still there go out through a claim',
        );
        this.wakeSignal.notify();
      } catch (error) {
        // The fresh rows, taken from the handoff already, must still go out; the stale ones are claimed
        // once their lease runs out.
        this.logger.warn(
          `Could not release ${stale.length} handed-over row(s) whose lease was too far gone; they go out through a claim ` +
            `when it ends: ${(error as Error).message}`,
        );
      }
    }
    // Looked at again after the release, which may have waited out its retries: a row whose lease is too
    // far gone by now is left to its lease too, never published on one that may run out meanwhile.
    const released = new Set(stale);
    const fresh = taken.filter(({ record, leasedAt }) => !released.has(record.id) && isFresh(leasedAt)).map(({ record }) => record);
    if (fresh.length > 0) await this.publishAndMark(fresh, this.handoff.token);
  }

  /** Claims a batch of due rows (`FOR UPDATE SKIP LOCKED` + lease), publishes and marks them. Returns how many were claimed. */
  private async relayClaimed(): Promise<number> {
    const { relay } = this.config.options;
    // Each batch holds its rows under a token of its own; marks only touch rows still held under it.
    const leaseToken = randomUUID();
    const rows = await this.database.store.claim(relay.batchSize, relay.leaseMs, leaseToken);
    if (rows.length > 0) await this.publishAndMark(rows, leaseToken);
    return rows.length;
  }

  /** Publishes rows held under `leaseToken`, then marks each by what the broker said. */
  private async publishAndMark(rows: readonly ClaimedOutboxRecord[], leaseToken: string): Promise<void> {
    const store = this.database.store;
    // One PRODUCER span per message, child of the trace stored with the row at publish(); the message
    // carries this span's context on, so the consumer's span is its child.
    const spans = rows.map((row) => this.startPublishSpan(row));
    let outcomes;
    try {
      outcomes = await this.transports.transport.publish(
        rows.map((row, index) => toOutgoingMessage(row, trace.setSpan(extractTraceContext(row.headers), spans[index]!))),
      );
    } catch (error) {
      // Nothing was sent (or nothing is known of it): the spans say so, not that a publish went well.
      const notReady = error instanceof TransportNotReadyError;
      const reason = typeof (error as Error)?.message === 'string' ? (error as Error).message : String(error);
      const outcome = notReady ? 'unsent' : 'failed';
      spans.forEach((span, index) => {
        endSpanGuarded(span, { [A.Outcome]: outcome }, reason);
        this.metrics.recordPublished(rows[index]!.eventName, outcome);
      });
      if (!notReady) throw error;
      // The connection dropped before the publish: nothing was sent. Hand the rows back (their attempt
      // count untouched); they go out once the broker is back. Retried as marks are: a release that
      // fails leaves them leased until the lease runs out.
      await withRetries(() =>
        store.release(
          rows.map((row) => row.id),
          leaseToken,
        ),
      );
      this.wakeSignal.notify();
      return;
    }

    const sent: string[] = [];
    const unsent: string[] = [];
    const unroutable = new Map<string, string[]>();
    const failed: FailedOutboxRecord[] = [];
    outcomes.forEach((outcome, index) => {
      const row = rows[index]!;
      const span = spans[index]!;
      // Never throws: a confirmed row must reach its mark whatever the application's span processors do.
      endSpanGuarded(span, { [A.Outcome]: outcome.status }, outcome.status === 'confirmed' ? undefined : outcome.reason);
      this.metrics.recordPublished(row.eventName, outcome.status);
      if (outcome.status === 'confirmed') sent.push(row.id);
      else if (outcome.status === 'unsent') unsent.push(row.id);
      else if (outcome.status === 'unroutable') unroutable.set(outcome.reason, [...(unroutable.get(outcome.reason) ?? []), row.id]);
      else failed.push({ id: row.id, error: outcome.reason, retryInMs: this.retryDelay(row) });
    });

    this.confirmed.add(sent, leaseToken);
    if (unsent.length > 0) {
      // The confirmed rows' mark starts first: the release below may wait out its retries (the database
      // away for a moment) for longer than their lease has left, and a late mark means a second send.
      if (this.confirmed.size > 0) void this.startMarks();
      // Never written to the connection (its channel closed, or the batch's time ran out, first): not an
      // attempt. Their lease goes, so that a claim (this relay's, or another instance's) takes them now.
      await withRetries(() => store.release(unsent, leaseToken)).then(
        () => this.wakeSignal.notify(),
        (error: unknown) =>
          this.logger.warn(`Could not release ${unsent.length} outbox row(s) left unsent; they go out when their lease ends: ${(error as Error).message}`),
      );
    }
    // Confirmed rows wait for the next ones (a batch's worth, or MARK_LINGER_MS) to share one mark;
    // failures are marked at once, with whatever confirmed rows wait.
    const failures = unroutable.size > 0 || failed.length > 0 ? { unroutable, failed, leaseToken } : undefined;
    if (failures || this.confirmed.size >= this.config.options.relay.batchSize || this.confirmed.age() >= MARK_LINGER_MS) {
      // The marks started before are awaited: at most one set is marked while the loop publishes.
      await this.startMarks(failures);
      this.throwMarkFailure();
    } else {
      this.armMarkTimer();
    }
  }

  /**
   * Queues the marks of the confirmed rows that wait (and a batch's failures) behind the marks already
   * started; they run while the loop claims and publishes the next batch (their rows stay leased until
   * marked, so no claim takes them again). A failure is kept for the loop (`throwMarkFailure()`).
   * @returns the marks started before these
   */
  private startMarks(failures?: BatchFailures): Promise<void> {
    clearTimeout(this.markTimer);
    this.markTimer = undefined;
    const before = this.marks;
    const sent = this.confirmed.takeAll();
    this.marks = before
      .then(() => this.mark(sent, failures))
      .catch((error: unknown) => {
        this.markFailure ??= { error };
      });
    return before;
  }

  /** Has the rows in `confirmed` marked once the oldest has waited MARK_LINGER_MS, if nothing else does it first. */
  private armMarkTimer(): void {
    if (this.markTimer || this.confirmed.size === 0) return;
    this.markTimer = setTimeout(
      () => {
        this.markTimer = undefined;
        if (this.confirmed.size > 0) void this.startMarks();
      },
      Math.max(0, MARK_LINGER_MS - this.confirmed.age()),
    );
  }

  /** Rethrows the first mark failure since the last call (it counts as the round's). */
  private throwMarkFailure(): void {
    const failure = this.markFailure;
    this.markFailure = undefined;
    if (failure) throw failure.error;
  }

  /** Marks rows by what the broker said: the confirmed ones under each lease token, then one batch's failures. */
  private async mark(sent: readonly MarkSet[], failures: BatchFailures | undefined): Promise<void> {
    const store = this.database.store;
    // The broker has these messages now: a failed mark would only mean re-sending them after the lease
    // (duplicates), so marks are retried a few times before the round gives up. One failing statement
    // does not keep the others from being tried; the first failure is thrown once all have been.
    let failure: { error: unknown } | undefined;
    const attempt = async (operation: () => Promise<void>, onFailure?: (error: unknown) => void): Promise<void> => {
      await withRetries(operation).catch((error: unknown) => {
        failure ??= { error };
        onFailure?.(error);
      });
    };
    for (const { leaseToken, ids, retry } of sent) {
      const markSent = async (): Promise<void> => {
        await store.markSent(ids, leaseToken);
        this.confirmed.marked(ids, leaseToken);
      };
      // Still the relay's to mark: tried again with the next marks until half a lease has passed since
      // the first failure.
      const putBack = (): void => {
        const givenUp = this.confirmed.putBack(ids, leaseToken, this.config.options.relay.leaseMs / 2);
        if (givenUp.length > 0) {
          this.logger.warn(
            `Gave up marking ${givenUp.length} published outbox row(s) sent; they go out again when their lease ends: ` +
              `${givenUp.slice(0, 20).join(', ')}${givenUp.length > 20 ? `, and ${givenUp.length - 20} more` : ''}`,
          );
        }
      };
      if (!retry) {
        await attempt(markSent, putBack);
        continue;
      }
      // Rows whose mark failed before: one try with each set of marks, whose failure does not fail the
      // round (the loop would back off, and hold back every row it has yet to publish, for rows the broker
      // already has). The first failure was logged with its round; giving up is logged in putBack().
      await markSent().catch((error: unknown) => {
        this.logger.debug(`Marking ${ids.length} published outbox row(s) sent failed again: ${(error as Error).message}`);
        putBack();
      });
    }
    if (failures) {
      const { unroutable, failed, leaseToken } = failures;
      for (const [reason, ids] of unroutable) {
        await attempt(async () => {
          await store.markUnroutable(ids, reason, leaseToken);
          this.logger.warn(`${ids.length} message(s) unroutable and flagged in the outbox (${reason}): ${ids.join(', ')}`);
        });
      }
      if (failed.length > 0) {
        await attempt(async () => {
          await store.markFailed(failed, leaseToken);
          this.logger.warn(`${failed.length} message(s) not confirmed, will retry: ${failed[0]!.error}`);
        });
      }
    }
    if (failure) throw failure.error;
  }

  /**
   * Marks the confirmed rows that wait and waits for every mark still running (before the loop idles or
   * ends); rethrows a failure, once all have finished.
   */
  private async settleMarks(): Promise<void> {
    if (this.confirmed.size > 0) void this.startMarks();
    await this.marks;
    this.throwMarkFailure();
  }

  /** Releases handed-over rows' lease, at shutdown or when they came too late; a failure leaves them to the lease's expiry. */
  private async releaseQuietly(ids: readonly string[]): Promise<void> {
    try {
      await this.database.store.release(ids, this.handoff.token);
    } catch (error) {
      this.logger.warn(`Could not release ${ids.length} handed-over outbox row(s); they go out when their lease ends: ${(error as Error).message}`);
    }
  }

  private startPublishSpan(row: ClaimedOutboxRecord): Span {
    const transport = this.config.options.inProcess ? 'in_process' : 'rabbitmq';
    const exchange = this.config.options.rabbitmq?.exchange ?? this.config.options.inProcess?.exchange ?? '';
    return startSpanGuarded(
      this.tracer,
      `publish ${row.eventName}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          [A.MessagingSystem]: transport,
          [A.MessagingOperationType]: 'send',
          [A.MessagingOperationName]: 'publish',
          [A.MessagingDestinationName]: exchange,
          [A.MessagingRoutingKey]: row.eventName,
          [A.MessagingMessageId]: row.id,
          [A.EventName]: row.eventName,
          [A.EventVersion]: row.eventVersion,
        },
      },
      extractTraceContext(row.headers),
    );
  }

  private retryDelay(row: ClaimedOutboxRecord): number {
    const { retryInitialDelayMs, retryMaxDelayMs } = this.config.options.relay;
    return exponentialBackoff(row.attempts + 1, retryInitialDelayMs, retryMaxDelayMs);
  }
}

/** The rows of one batch the broker did not confirm, to be marked under that batch's lease token. */
interface BatchFailures {
  /** Row ids by the reason they were returned. */
  readonly unroutable: ReadonlyMap<string, string[]>;
  readonly failed: readonly FailedOutboxRecord[];
  readonly leaseToken: string;
}

async function withRetries(operation: () => Promise<void>, delaysMs: readonly number[] = [100, 500, 2_000]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      const delay = delaysMs[attempt];
      if (delay === undefined) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

function toOutgoingMessage(row: ClaimedOutboxRecord, traceContext: Context): OutgoingMessage {
  return {
    messageId: row.id,
    routingKey: row.eventName,
    body: Buffer.from(row.payload, 'utf8'),
    headers: withTraceContext(row.headers, traceContext) as OutgoingMessage['headers'],
    occurredAt: row.occurredAt,
    correlationId: String(row.headers[MessageHeaders.CorrelationId] ?? row.id),
    sourceService: String(row.headers[MessageHeaders.SourceService] ?? ''),
  };
}
