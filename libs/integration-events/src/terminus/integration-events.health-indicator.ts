import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { IntegrationEventsHealth } from '../health/integration-events.health';

/**
 * A @nestjs/terminus health indicator for integration events: up when the broker is connected, the relay
 * runs, every handler has a consumer and, where the relay runs, no outbox row has waited or failed to
 * publish for `maxLagMs`; down (with the reasons) otherwise.
 *
 * @example
 * ```ts
 * @Controller('health')
 * export class HealthController {
 *   constructor(private readonly health: HealthCheckService, private readonly integrationEvents: IntegrationEventsHealthIndicator) {}
 *   @Get() @HealthCheck()
 *   check() {
 *     return this.health.check([() => this.integrationEvents.isHealthy('integrationEvents', { maxLagMs: 60_000 })]);
 *   }
 * }
 * ```
 */
@Injectable()
export class IntegrationEventsHealthIndicator {
  constructor(
    private readonly health: IntegrationEventsHealth,
    private readonly indicators: HealthIndicatorService,
  ) {}

  async isHealthy<const Key extends string = 'integrationEvents'>(key: Key = 'integrationEvents' as Key, options: { maxLagMs?: number; timeoutMs?: number } = {}) {
    const { healthy, ...report } = await this.health.check(options);
    const indicator = this.indicators.check(key);
    return healthy ? indicator.up({ ...report }) : indicator.down({ ...report });
  }
}
