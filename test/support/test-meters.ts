import { metrics } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';

/** Collects on demand only: the test reads the counts when it wants them. */
class OnDemandMetricReader extends MetricReader {
  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}

export interface TestMeters {
  /** One counter's data points for one handler, as [event name, outcome or reason, value], sorted. */
  counts(name: string, handler: string): Promise<unknown[][]>;
  /** Unregisters the provider (the library's counts go back to the no-op meter) and shuts it down. */
  stop(): Promise<void>;
}

/**
 * A meter provider of the calling test's own, registered as the global one until `stop()`: the library
 * takes up a provider registered while it runs (README, "Metrics").
 */
export function registerTestMeterProvider(): TestMeters {
  const reader = new OnDemandMetricReader();
  const provider = new MeterProvider({ readers: [reader] });
  if (!metrics.setGlobalMeterProvider(provider)) throw new Error('Another global meter provider is still registered');
  return {
    async counts(name, handler) {
      const { resourceMetrics } = await reader.collect();
      const metric = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((m) => m.descriptor.name === name);
      return (metric?.dataPoints ?? [])
        .filter((p) => p.attributes['integration_events.handler'] === handler)
        .map((p) => [
          p.attributes['integration_events.event.name'],
          p.attributes['integration_events.outcome'] ?? p.attributes['integration_events.reason'] ?? null,
          p.value,
        ])
        .sort();
    },
    async stop() {
      metrics.disable();
      await provider.shutdown();
    },
  };
}
