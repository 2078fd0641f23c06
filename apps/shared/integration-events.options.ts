import type { IntegrationEventsModuleOptions } from 'nestjs-integration-events';
import type { ServiceConfig } from './example-config';

/** The library's options for one example service, on the transport and database of its mode. */
export function integrationEventsOptions(service: string, config: ServiceConfig): IntegrationEventsModuleOptions {
  return {
    serviceName: service,
    dataSourceName: service,
    transactionConnectionName: service,
    ...(config.transport.kind === 'rabbitmq' ? { rabbitmq: { url: config.transport.url } } : { inProcess: { broker: config.transport.broker } }),
    ...(config.database.kind === 'postgres' ? { outbox: { schema: service } } : {}),
  };
}
