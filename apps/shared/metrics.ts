import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

let exporter: PrometheusExporter | undefined;

/**
 * Registers an OpenTelemetry meter provider with a Prometheus exporter, once per process, before the
 * services start (instruments created before a provider exists stay no-ops). The library's metrics then
 * appear on each service's `GET /metrics`. No HTTP server of the exporter's own: the services serve it.
 */
export function installMetrics(): PrometheusExporter {
  if (!exporter) {
    exporter = new PrometheusExporter({ preventServerStart: true });
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [exporter] }));
  }
  return exporter;
}
