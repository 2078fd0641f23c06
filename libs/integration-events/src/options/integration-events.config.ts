import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { INTEGRATION_EVENTS_OPTIONS } from '../integration-events.module-definition';
import { InvalidIntegrationEventsOptionsError } from '../errors/invalid-options.error';
import type { IntegrationEventsModuleOptions } from './integration-events-module-options.interface';
import { resolveOptions } from './resolve-options';
import type { ResolvedIntegrationEventsOptions } from './resolved-options';

/**
 * Holds the resolved module options. Resolution happens in `onModuleInit` (or on first use, whichever
 * comes first), never in a provider factory: an error thrown there reaches the caller of `app.init()`,
 * where a factory error would make Nest exit the process before anyone could read it.
 */
@Injectable()
export class IntegrationEventsConfig implements OnModuleInit {
  private resolved: ResolvedIntegrationEventsOptions | undefined;

  constructor(@Inject(INTEGRATION_EVENTS_OPTIONS) private readonly raw: IntegrationEventsModuleOptions) {}

  onModuleInit(): void {
    void this.options;
  }

  get options(): ResolvedIntegrationEventsOptions {
    if (!this.resolved) {
      // Nest takes `isGlobal` out of forRoot()'s options; here it can only come from a forRootAsync()
      // factory, where Nest never reads it.
      const isGlobal = typeof this.raw === 'object' && this.raw !== null ? (this.raw as { isGlobal?: unknown }).isGlobal : undefined;
      if (isGlobal !== undefined) {
        throw new InvalidIntegrationEventsOptionsError(
          'isGlobal',
          isGlobal,
          'give it to forRootAsync({ isGlobal, useFactory }) itself: what the factory returns are the module options, where Nest never reads it',
        );
      }
      this.resolved = resolveOptions(this.raw);
    }
    return this.resolved;
  }
}
