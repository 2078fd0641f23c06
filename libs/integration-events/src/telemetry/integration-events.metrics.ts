import { Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import {
  metrics,
  type BatchObservableCallback,
  type Counter,
  type Histogram,
  type Meter,
  type MeterProvider,
  type ObservableGauge,
} from '@opentelemetry/api';
import { OutboxDatabase } from '../outbox/outbox-database';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { INSTRUMENTATION_NAME, TelemetryAttributes as A } from './telemetry-attributes';
import { SingleFlight } from '../util/single-flight';
import { withinTime } from '../util/within-time';

/** Bucket boundaries of `integration_events.handler.duration`, in seconds: 5 ms to 2 min. */
export const HANDLER_DURATION_BUCKETS_S: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** How often a meter provider registered after the start is looked for when nothing is counted. */
const PROVIDER_CHECK_INTERVAL_MS = 1_000;
/** Failed counts are warned about at most this often. */
const FAILURE_WARNING_INTERVAL_MS = 60_000;

/** The instruments, made from one meter provider's meter. */
class Instruments {
  readonly meter: Meter;
  readonly published: Counter;
  readonly handled: Counter;
  readonly retried: Counter;
  readonly deadLettered: Counter;
  readonly duration: Histogram;
  readonly backlog: ObservableGauge;
  readonly lag: ObservableGauge;

  constructor(readonly provider: MeterProvider) {
    this.meter = provider.getMeter(INSTRUMENTATION_NAME);
    this.published = this.meter.createCounter('integration_events.published', {
      description: 'Messages handed to the broker by the relay, by outcome',
    });
    this.handled = this.meter.createCounter('integration_events.handled', {
      description: 'Deliveries handled by an integration event handler, by outcome',
    });
    this.retried = this.meter.createCounter('integration_events.retried', {
      description: 'Failed handler attempts whose retry copy was placed in its wait queue',
    });
    this.deadLettered = this.meter.createCounter('integration_events.dead_lettered', {
      description: 'Messages placed in a dead-letter queue',
    });
    this.duration = this.meter.createHistogram('integration_events.handler.duration', {
      description: 'Time a handler call took',
      unit: 's',
      // In seconds: the SDK's default buckets (0, 5, 10, 25 … 10,000) are made for milliseconds, and
      // would put every call under 5 s in one bucket. A view of the application's still overrides them.
      advice: { explicitBucketBoundaries: [...HANDLER_DURATION_BUCKETS_S] },
    });
    this.backlog = this.meter.createObservableGauge('integration_events.outbox.backlog', {
      description: 'Pending outbox rows that are due',
    });
    this.lag = this.meter.createObservableGauge('integration_events.outbox.lag', {
      description: 'Age of the oldest due pending outbox row',
      unit: 's',
    });
  }
}

/**
 * The library's metrics, through the OpenTelemetry metrics API: without an SDK they cost nothing; with
 * one (and, say, its Prometheus exporter) they are exported with the application's own, whenever the
 * application registers it (before or after the module starts).
 *
 * | metric | type | attributes |
 * |---|---|---|
 * | `integration_events.published` | counter | event name, outcome (`confirmed`, `unroutable`, `failed`, `unsent`) |
 * | `integration_events.handled` | counter | event name, handler, outcome (`ack`, `retry`, `dead_letter`, `duplicate`, `other_version`) |
 * | `integration_events.retried` | counter | event name, handler (retry copies placed in their wait queue) |
 * | `integration_events.dead_lettered` | counter | event name, handler, reason (messages placed in their dead-letter queue) |
 * | `integration_events.handler.duration` | histogram, seconds | event name, handler, outcome |
 * | `integration_events.outbox.backlog` | gauge, rows | service (pending rows that are due) |
 * | `integration_events.outbox.lag` | gauge, seconds | service (age of the oldest due pending row) |
 */
/** How long a scrape waits for the outbox's backlog before the gauges go without a value. */
const OUTBOX_GAUGE_TIMEOUT_MS = 3_000;

@Injectable()
export class IntegrationEventsMetrics implements OnApplicationBootstrap, OnModuleDestroy {
  /**
   * Made from the global meter provider of the moment, and made again when it changes: the metrics API
   * has no proxy, so instruments made before the application registers its SDK would stay no-ops.
   */
  private readonly logger = new Logger('IntegrationEvents:Metrics');
  private current: Instruments | undefined;
  private destroyed = false;
  /** When the last failed count was warned about (`performance.now()`). */
  private lastFailureWarning: number | undefined;
  /** Looks for a newly registered provider now and then, so the outbox gauges follow it while nothing is counted. */
  private watch: NodeJS.Timeout | undefined;

  /** One backlog read at a time, shared by the scrapes that come meanwhile (see `SingleFlight`). */
  private readonly backlogRead = new SingleFlight<{ pending: number; lagMs: number }>();
  /** When the last unanswered backlog read was warned about (`performance.now()`). */
  private lastBacklogWarning: number | undefined;

  private readonly observeOutbox: BatchObservableCallback = async (result) => {
    const { backlog, lag } = this.instruments();
    let pending: number;
    let lagMs: number;
    try {
      // Bounded: a scrape waits for every callback, so a database that does not answer would take the
      // application's other metrics down with these two, at the moment they matter.
      ({ pending, lagMs } = await withinTime(
        this.backlogRead.run(() => this.database.store.backlog()),
        OUTBOX_GAUGE_TIMEOUT_MS,
        `the outbox's backlog was not read within ${OUTBOX_GAUGE_TIMEOUT_MS} ms`,
      ));
    } catch (error) {
      // Not observed this time: a gauge with no value, rather than a stale or made-up one.
      const now = performance.now();
      if (this.lastBacklogWarning === undefined || now - this.lastBacklogWarning >= 60_000) {
        this.lastBacklogWarning = now;
        this.logger.warn(`Metrics: the outbox gauges have no value this time: ${(error as Error).message}`);
      }
      return;
    }
    const attributes = { 'service.name': this.config.options.serviceName };
    result.observe(backlog, pending, attributes);
    result.observe(lag, lagMs / 1000, attributes);
  };

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly database: OutboxDatabase,
  ) {}

  /** After every module's `onModuleInit`, where an application may start its SDK: the gauges register. */
  onApplicationBootstrap(): void {
    this.instruments();
    clearInterval(this.watch);
    this.watch = setInterval(() => {
      try {
        this.instruments();
      } catch (error) {
        // A meter provider that throws must not become an uncaught exception of a timer.
        this.logger.warn(`Metrics: the meter provider failed: ${(error as Error).message}`);
      }
    }, PROVIDER_CHECK_INTERVAL_MS);
    this.watch.unref();
  }

  onModuleDestroy(): void {
    this.destroyed = true;
    clearInterval(this.watch);
    this.unobserve();
  }

  recordPublished(eventName: string, outcome: 'confirmed' | 'unroutable' | 'failed' | 'unsent', count = 1): void {
    this.record((instruments) => instruments.published.add(count, { [A.EventName]: eventName, [A.Outcome]: outcome }));
  }

  recordHandled(eventName: string, handler: string, outcome: 'ack' | 'retry' | 'dead_letter' | 'duplicate' | 'other_version', seconds: number | undefined): void {
    this.record((instruments) => {
      const attributes = { [A.EventName]: eventName, [A.Handler]: handler, [A.Outcome]: outcome };
      instruments.handled.add(1, attributes);
      if (seconds !== undefined) instruments.duration.record(seconds, attributes);
    });
  }

  recordRetried(eventName: string, handler: string): void {
    this.record((instruments) => instruments.retried.add(1, { [A.EventName]: eventName, [A.Handler]: handler }));
  }

  recordDeadLettered(eventName: string, handler: string, reason: string): void {
    this.record((instruments) => instruments.deadLettered.add(1, { [A.EventName]: eventName, [A.Handler]: handler, [A.Reason]: reason }));
  }

  /**
   * Counts something; never throws. The counts are taken after the work they count (a message handled
   * and acknowledged, rows published): a meter provider that throws must not fail that work, which
   * would then be done again (a message given back to its queue, rows sent twice). Warned about at
   * most once a minute.
   */
  private record(write: (instruments: Instruments) => void): void {
    try {
      write(this.instruments());
    } catch (error) {
      const now = performance.now();
      if (this.lastFailureWarning !== undefined && now - this.lastFailureWarning < FAILURE_WARNING_INTERVAL_MS) return;
      this.lastFailureWarning = now;
      this.logger.warn(`Metrics: the meter provider failed, the count is lost: ${(error as Error).message}`);
    }
  }

  private instruments(): Instruments {
    const provider = metrics.getMeterProvider();
    if (this.current?.provider !== provider) {
      this.unobserve();
      this.current = new Instruments(provider);
      if (!this.destroyed) this.current.meter.addBatchObservableCallback(this.observeOutbox, [this.current.backlog, this.current.lag]);
    }
    return this.current;
  }

  private unobserve(): void {
    this.current?.meter.removeBatchObservableCallback(this.observeOutbox, [this.current.backlog, this.current.lag]);
  }
}
