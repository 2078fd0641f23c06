import { Logger } from '@nestjs/common';
import { type MeterProvider, metrics, createNoopMeter } from '@opentelemetry/api';
import type { OutboxDatabase } from '../outbox/outbox-database';
import type { IntegrationEventsConfig } from '../options/integration-events.config';
import { IntegrationEventsMetrics } from './integration-events.metrics';

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
});
