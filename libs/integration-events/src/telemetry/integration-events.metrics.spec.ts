import { Logger } from '@nestjs/common';
import { type MeterProvider, metrics, createNoopMeter } from '@opentelemetry/api';
import type { OutboxDatabase } from '../outbox/outbox-database';
import type { IntegrationEventsConfig } from '../options/integration-events.config';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider as SdkMeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { HANDLER_DURATION_BUCKETS_S, IntegrationEventsMetrics } from './integration-events.metrics';

describe('IntegrationEventsMetrics', () => {
  afterEach(() => {
    metrics.disable();
    jest.restoreAllMocks();
  });

  const countEverything = (counts: IntegrationEventsMetrics): void => {
    counts.recordPublished('ordering.order-created', 'confirmed', 3);
    counts.recordHandled('ordering.order-created', 'Billing', 'ack', 0.01);
    counts.recordRetried('ordering.order-created', 'Billing');
    counts.recordDeadLettered('ordering.order-created', 'Billing', 'poison');
  };

  // The counts come after the work they count: a throw would send a handled message back to its queue,
  // or fail a relay round whose rows the broker already has.
  it.each<[string, MeterProvider]>([
    [
      'its meter cannot be made',
      {
        getMeter: () => {
          throw new Error('broken SDK');
        },
      },
    ],
    [
      'its instruments throw',
      {
        getMeter: () => {
          const meter = createNoopMeter();
          const counter = meter.createCounter('x');
          counter.add = () => {
            throw new Error('broken SDK');
          };
          return Object.assign(Object.create(meter) as typeof meter, { createCounter: () => counter });
        },
      },
    ],
  ])('never throws from a count when %s, and warns about it once a minute', (_case, provider) => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const counts = new IntegrationEventsMetrics({ options: { serviceName: 'ordering' } } as IntegrationEventsConfig, {} as OutboxDatabase);
    metrics.setGlobalMeterProvider(provider);

    expect(() => countEverything(counts)).not.toThrow();
    expect(() => countEverything(counts)).not.toThrow();
    expect(warn.mock.calls.map(([message]) => message)).toEqual(['Metrics: the meter provider failed, the count is lost: broken SDK']);
  });

  it('buckets handler durations in seconds, from 5 ms to 2 min, not in the SDK default (made for milliseconds)', async () => {
    const reader = new PeriodicExportingMetricReader({
      exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
      exportIntervalMillis: 60_000,
    });
    const provider = new SdkMeterProvider({ readers: [reader] });
    metrics.setGlobalMeterProvider(provider);
    const counts = new IntegrationEventsMetrics({ options: { serviceName: 'ordering' } } as IntegrationEventsConfig, {} as OutboxDatabase);
    counts.recordHandled('ordering.order-created', 'Billing', 'ack', 0.003);
    counts.recordHandled('ordering.order-created', 'Billing', 'ack', 0.2);
    counts.recordHandled('ordering.order-created', 'Billing', 'ack', 3);
    const { resourceMetrics } = await reader.collect();
    const histogram = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((m) => m.descriptor.name === 'integration_events.handler.duration');
    const point = histogram?.dataPoints[0]?.value as { buckets: { boundaries: number[]; counts: number[] } } | undefined;
    expect(point?.buckets.boundaries).toEqual([...HANDLER_DURATION_BUCKETS_S]);
    expect(point?.buckets.boundaries).toEqual([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]);
    // 3 ms, 200 ms and 3 s each in a bucket of its own.
    expect(point?.buckets.counts.filter((count) => count > 0)).toEqual([1, 1, 1]);
    counts.onModuleDestroy();
    await provider.shutdown();
  });
});
