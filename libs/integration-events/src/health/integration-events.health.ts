import { Injectable } from '@nestjs/common';
import { IntegrationEventConsumers } from '../consumer/integration-event-consumers';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { OutboxDatabase } from '../outbox/outbox-database';
import { OutboxRelay } from '../relay/outbox.relay';
import { failedAttemptsSpanning } from '../relay/retry-delay';
import { TransportHost } from '../transport/transport-host';
import type { OutboxStore } from '../outbox/outbox.store';
import { SingleFlight } from '../util/single-flight';
import { withinTime } from '../util/within-time';

/** The state of this service's integration events, as a health check sees it. */
export interface IntegrationEventsHealthReport {
  readonly healthy: boolean;
  /** What is wrong, when something is. */
  readonly problems: readonly string[];
  readonly broker: { readonly connected: boolean; readonly transport: string };
  readonly relay: { readonly enabled: boolean; readonly running: boolean };
  readonly consumers: { readonly handlers: number; readonly attached: number };
  readonly outbox: {
    readonly backlog: number;
    readonly lagMs: number;
    readonly maxLagMs: number;
    /** Pending rows that have failed to publish for at least `maxLagMs` (see `check()`). */
    readonly failing: number;
  };
}

/**
 * Answers "are integration events flowing?": the broker connection is up, the relay runs (where enabled),
 * every handler has a consumer attached, and, where the relay runs, the oldest due outbox row is not
 * older than `maxLagMs` and no row has been failing to publish for that long.
 * Framework-free; `nestjs-integration-events/terminus` wraps it as a @nestjs/terminus health indicator.
 */
@Injectable()
export class IntegrationEventsHealth {
  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly transports: TransportHost,
    private readonly relay: OutboxRelay,
    private readonly consumers: IntegrationEventConsumers,
    private readonly database: OutboxDatabase,
  ) {}

  /** One read of each kind at a time, shared by the checks that come meanwhile (see `SingleFlight`). */
  private readonly backlogRead = new SingleFlight<Awaited<ReturnType<OutboxStore['backlog']>>>();
  private readonly failingReads = new Map<number, SingleFlight<Awaited<ReturnType<OutboxStore['failing']>>>>();

  /**
   * @param maxLagMs how old the oldest due outbox row may be (default 60 s)
   * @param timeoutMs how long the outbox's figures may take to read (default 5 s): a database that does
   *   not answer makes the check report it, not hang (a read still running is shared by the next checks)
   */
  async check(options: { maxLagMs?: number; timeoutMs?: number } = {}): Promise<IntegrationEventsHealthReport> {
    // A typo'd key ({ maxLag: 30000 }) would otherwise check against the default without a word.
    const unknown = typeof options === 'object' && options !== null ? Object.keys(options).filter((key) => key !== 'maxLagMs' && key !== 'timeoutMs') : [];
    if (typeof options !== 'object' || options === null || unknown.length > 0) {
      throw new TypeError(
        `The health check takes { maxLagMs, timeoutMs }${unknown.length > 0 ? `, not ${unknown.map((key) => JSON.stringify(key)).join(', ')}` : ` or nothing, not ${String(options)}`}`,
      );
    }
    const { maxLagMs = 60_000, timeoutMs = 5_000 } = options;
    if (typeof maxLagMs !== 'number' || !(maxLagMs > 0) || !Number.isFinite(maxLagMs)) {
      // null would count as 0 (down whenever a row is due); NaN and Infinity would switch the lag and
      // failing-row checks off.
      throw new RangeError(`The health check's maxLagMs takes a positive, finite number of milliseconds, not ${String(maxLagMs)}`);
    }
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || timeoutMs > 2_147_483_647) {
      // Over 2^31 - 1, Node's timers fire at once.
      throw new RangeError(`The health check's timeoutMs takes a positive number of milliseconds up to 2147483647, not ${String(timeoutMs)}`);
    }
    const { relay: relayOptions, consumer } = this.config.options;
    const transport = this.transports.transport;
    const problems: string[] = [];
    const connected = transport.isConnected;
    if (!connected) problems.push(`not connected to ${transport.description}`);
    const running = this.relay.isRunning;
    if (relayOptions.enabled && !running) problems.push('the relay is not running');
    const status = this.consumers.status;
    if (consumer.enabled && status.attached < status.handlers) {
      problems.push(`${status.handlers - status.attached} of ${status.handlers} handler(s) have no consumer attached`);
    }
    let backlog = 0;
    let lagMs = 0;
    let failing = 0;
    try {
      // A row the broker keeps refusing is due again after each retry delay, so its wait never grows:
      // count the rows whose failed attempts span maxLagMs or more.
      const attempts = failedAttemptsSpanning(maxLagMs, relayOptions.retryInitialDelayMs, relayOptions.retryMaxDelayMs);
      const store = this.database.store;
      let failingRead = this.failingReads.get(attempts);
      if (!failingRead) {
        // One per maxLagMs callers use: a few. Bounded all the same, should one pass any value it is given.
        if (this.failingReads.size >= 16) this.failingReads.clear();
        this.failingReads.set(attempts, (failingRead = new SingleFlight()));
      }
      const [due, failed] = await withinTime(
        Promise.all([this.backlogRead.run(() => store.backlog()), failingRead.run(() => store.failing(attempts))]),
        timeoutMs,
        `no answer within ${timeoutMs} ms (the database is slow, or away)`,
      );
      backlog = due.pending;
      lagMs = due.lagMs;
      failing = failed.rows;
      // The outbox is the relay's work: where it is off (a consumer-only deployment), another deployment
      // publishes these rows, and this one's health does not depend on them.
      if (relayOptions.enabled && lagMs > maxLagMs) {
        problems.push(`the oldest due outbox row waits for ${Math.round(lagMs / 1000)} s (more than ${maxLagMs / 1000} s)`);
      }
      if (relayOptions.enabled && failing > 0) {
        problems.push(
          `${failing} outbox row(s) failed to publish ${attempts} times or more, for at least ${maxLagMs / 1000} s ` +
            `(last error: ${failed.lastError ?? 'none recorded'})`,
        );
      }
    } catch (error) {
      // Unlike its lag, an outbox this deployment cannot read is its own problem (its database).
      problems.push(`the outbox cannot be read: ${(error as Error).message}`);
    }
    return {
      healthy: problems.length === 0,
      problems,
      broker: { connected, transport: transport.description },
      relay: { enabled: relayOptions.enabled, running },
      consumers: status,
      outbox: { backlog, lagMs, maxLagMs, failing },
    };
  }
}
