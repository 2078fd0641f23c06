import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { metrics, type BatchObservableCallback, type Counter, type Histogram, type ObservableGauge } from '@opentelemetry/api';
import { OutboxDatabase } from '../outbox/outbox-database';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { INSTRUMENTATION_NAME, TelemetryAttributes as A } from './telemetry-attributes';

/**
 * The library's metrics, through the OpenTelemetry metrics API: without an SDK they cost nothing; with
 * one (and, say, its Prometheus exporter) they are exported with the application's own.
 *
 * | metric | type | attributes |
 * |---|---|---|
 * | `integration_events.published` | counter | event name, outcome (`confirmed`, `unroutable`, `failed`) |
 * | `integration_events.handled` | counter | event name, handler, outcome (`ack`, `retry`, `dead_letter`, `duplicate`) |
 * | `integration_events.retried` | counter | event name, handler (retry copies placed in their wait queue) |
 * | `integration_events.dead_lettered` | counter | event name, handler, reason (messages placed in their dead-letter queue) |
 * | `integration_events.handler.duration` | histogram, seconds | event name, handler, outcome |
 * | `integration_events.outbox.backlog` | gauge, rows | service (pending rows that are due) |
 * | `integration_events.outbox.lag` | gauge, seconds | service (age of the oldest due pending row) |
 */
@Injectable()
export class IntegrationEventsMetrics implements OnModuleDestroy {
  private readonly meter = metrics.getMeter(INSTRUMENTATION_NAME);
  private readonly published: Counter = this.meter.createCounter('integration_events.published', {
    description: 'Messages handed to the broker by the relay, by outcome',
  });
  private readonly handled: Counter = this.meter.createCounter('integration_events.handled', {
    description: 'Deliveries handled by an integration event handler, by outcome',
  });
  private readonly retried: Counter = this.meter.createCounter('integration_events.retried', {
    description: 'Failed handler attempts scheduled for a retry',
  });
  private readonly deadLettered: Counter = this.meter.createCounter('integration_events.dead_lettered', {
    description: 'Messages moved to a dead-letter queue',
  });
  private readonly duration: Histogram = this.meter.createHistogram('integration_events.handler.duration', {
    description: 'Time a handler call took',
    unit: 's',
  });
  private readonly backlog: ObservableGauge = this.meter.createObservableGauge('integration_events.outbox.backlog', {
    description: 'Pending outbox rows that are due',
  });
  private readonly lag: ObservableGauge = this.meter.createObservableGauge('integration_events.outbox.lag', {
    description: 'Age of the oldest due pending outbox row',
    unit: 's',
  });
  private readonly observeOutbox: BatchObservableCallback = async (result) => {
    const { pending, oldestDueAt } = await this.database.store.backlog();
    const attributes = { 'service.name': this.config.options.serviceName };
    result.observe(this.backlog, pending, attributes);
    result.observe(this.lag, oldestDueAt ? Math.max(0, (Date.now() - oldestDueAt.getTime()) / 1000) : 0, attributes);
  };

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly database: OutboxDatabase,
  ) {
    this.meter.addBatchObservableCallback(this.observeOutbox, [this.backlog, this.lag]);
  }

  onModuleDestroy(): void {
    this.meter.removeBatchObservableCallback(this.observeOutbox, [this.backlog, this.lag]);
  }

  recordPublished(eventName: string, outcome: 'confirmed' | 'unroutable' | 'failed', count = 1): void {
    this.published.add(count, { [A.EventName]: eventName, [A.Outcome]: outcome });
  }

  recordHandled(eventName: string, handler: string, outcome: 'ack' | 'retry' | 'dead_letter' | 'duplicate', seconds: number | undefined): void {
    const attributes = { [A.EventName]: eventName, [A.Handler]: handler, [A.Outcome]: outcome };
    this.handled.add(1, attributes);
    if (seconds !== undefined) this.duration.record(seconds, attributes);
  }

  recordRetried(eventName: string, handler: string): void {
    this.retried.add(1, { [A.EventName]: eventName, [A.Handler]: handler });
  }

  recordDeadLettered(eventName: string, handler: string, reason: string): void {
    this.deadLettered.add(1, { [A.EventName]: eventName, [A.Handler]: handler, [A.Reason]: reason });
  }
}
