import { Controller, Get, Module, Req, Res } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { IntegrationEventsHealthIndicator } from 'nestjs-integration-events/terminus';
import { installMetrics } from './metrics';

@Controller()
class ObservabilityController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly integrationEvents: IntegrationEventsHealthIndicator,
  ) {}

  /**
   * Up when the broker is connected, the relay runs, every handler has a consumer and the outbox lag is
   * under 60 s: above relay.leaseMs plus relay.pollIntervalMs (31 s by default), the longest rows a killed
   * instance had leased wait before another takes them.
   */
  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check([() => this.integrationEvents.isHealthy('integrationEvents', { maxLagMs: 60_000 })]);
  }

  /** Prometheus scrape endpoint: the library's metrics (OpenTelemetry, Prometheus exporter). */
  @Get('metrics')
  metrics(@Req() request: IncomingMessage, @Res() response: ServerResponse): void {
    installMetrics().getMetricsRequestHandler(request, response);
  }
}

/** `/health` and `/metrics` for an example service. */
@Module({
  imports: [TerminusModule],
  controllers: [ObservabilityController],
  providers: [IntegrationEventsHealthIndicator],
})
export class ObservabilityModule {}
