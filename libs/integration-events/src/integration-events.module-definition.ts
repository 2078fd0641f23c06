import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { IntegrationEventsModuleOptions } from './options/integration-events-module-options.interface';

/**
 * `forRoot` / `forRootAsync` come from Nest's `ConfigurableModuleBuilder`. The module is global by
 * default, so `IntegrationEventPublisher` can be injected anywhere; pass `isGlobal: false` to opt out.
 * (`isGlobal: undefined` takes the default too: the builder's extras spread it over the `true`.)
 */
export const {
  ConfigurableModuleClass: IntegrationEventsConfigurableModule,
  MODULE_OPTIONS_TOKEN: INTEGRATION_EVENTS_OPTIONS,
  OPTIONS_TYPE: INTEGRATION_EVENTS_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: INTEGRATION_EVENTS_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<IntegrationEventsModuleOptions>()
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal ?? true }))
  .build();

/** What `IntegrationEventsModule.forRootAsync()` takes: `useFactory` (or `useClass`, `useExisting`), `inject`, `imports`, `isGlobal`. */
export type IntegrationEventsModuleAsyncOptions = typeof INTEGRATION_EVENTS_ASYNC_OPTIONS_TYPE;
