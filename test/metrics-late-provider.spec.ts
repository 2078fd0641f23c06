/**
 * The OpenTelemetry metrics API has no proxy: instruments made before a meter provider is registered stay
 * no-ops. An application that starts its SDK after the library (in a module's hook, after `app.init()`)
 * still gets the library's metrics.
 */
import type { TestingModule } from '@nestjs/testing';
import { metrics } from '@opentelemetry/api';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { IntegrationEventPublisher } from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

describe('metrics with a meter provider registered after the application started', () => {
  let ns: TestNamespace;
  let app: TestingModule;

  beforeAll(async () => {
    ns = await TestNamespace.create();
    app = await startTestApp(ns, { providers: [OrderCreatedRecorder] });
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
    metrics.disable();
  });

  it('counts and observes through the provider registered later', async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
    const exportedNames = async () => {
      await reader.collect();
      await reader.forceFlush();
      const exported = exporter.getMetrics().flatMap((resource) => resource.scopeMetrics.flatMap((scope) => scope.metrics));
      return new Set(exported.filter((m) => m.dataPoints.length > 0).map((m) => m.descriptor.name));
    };

    // An idle service: nothing counted yet, the outbox gauges follow the new provider all the same.
    await eventually(async () => expect(await exportedNames()).toContain('integration_events.outbox.lag'), { timeoutMs: 5_000 });

    await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('late-provider'), { standalone: true });
    await eventually(() => expect(app.get(OrderCreatedRecorder).received).toHaveLength(1));
    const names = await eventually(async () => {
      const found = await exportedNames();
      expect(found).toContain('integration_events.handled');
      return found;
    });
    expect([...names].sort()).toEqual([
      'integration_events.handled',
      'integration_events.handler.duration',
      'integration_events.outbox.backlog',
      'integration_events.outbox.lag',
      'integration_events.published',
    ]);
    await reader.shutdown();
  });
});
