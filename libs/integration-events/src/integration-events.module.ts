import {
  type BeforeApplicationShutdown,
  type DynamicModule,
  Logger,
  Module,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type OnModuleDestroy,
} from '@nestjs/common';
import { APP_INTERCEPTOR, DiscoveryModule } from '@nestjs/core';
import { IntegrationEventConsumers } from './consumer/integration-event-consumers';
import { MessageDispatcher } from './consumer/message-dispatcher';
import { CorrelationContext } from './correlation/correlation.context';
import { CorrelationInterceptor } from './correlation/correlation.interceptor';
import { CqrsHandlersReady } from './cqrs/cqrs-handlers-ready';
import { DomainEventsBridge } from './cqrs/domain-events.bridge';
import { DeadLetterService } from './dead-letter/dead-letter.service';
import { OutboxAdminService } from './outbox/outbox-admin.service';
import { TransactionTurns } from './outbox/transaction-turns';
import { InboxGuard } from './inbox/inbox.guard';
import { warnIfInboxCanFillThePool } from './inbox/pool-size-check';
import { warnIfDeliveriesCanOutwaitConsumerTimeout } from './consumer/consumer-timeout-check';
import { CleanupWorker } from './retention/cleanup.worker';
import { IntegrationEventsMetrics } from './telemetry/integration-events.metrics';
import { IntegrationEventsHealth } from './health/integration-events.health';
import { IntegrationEventConverterRegistry } from './cqrs/integration-event-converter.registry';
import { IntegrationEventHandlerExplorer } from './discovery/integration-event-handler.explorer';
import {
  IntegrationEventsConfigurableModule,
  type INTEGRATION_EVENTS_ASYNC_OPTIONS_TYPE,
  type INTEGRATION_EVENTS_OPTIONS_TYPE,
} from './integration-events.module-definition';
import { InvalidIntegrationEventsOptionsError } from './errors/invalid-options.error';
import { IntegrationEventsConfig } from './options/integration-events.config';
import { resolveOptions } from './options/resolve-options';
import { assertAsyncOptions } from './options/assert-async-options';
import { EntityManagerResolver } from './outbox/entity-manager.resolver';
import { OutboxDatabase } from './outbox/outbox-database';
import { assertTransactionHostFits } from './outbox/transaction-host-check';
import { IntegrationEventPublisher } from './publisher/integration-event.publisher';
import { OutboxRelay } from './relay/outbox.relay';
import { RelayHandoff } from './relay/relay-handoff';
import { WakeSignal } from './relay/wake-signal';
import { RabbitMqConnection, RabbitMqPublishingConnection } from './transport/rabbitmq/rabbitmq.connection';
import { RabbitMqPublisher } from './transport/rabbitmq/rabbitmq.publisher';
import { RabbitMqTransport } from './transport/rabbitmq/rabbitmq.transport';
import { TransportHost } from './transport/transport-host';

/**
 * Integration events for a Nest application: the outbox publisher, the relay to RabbitMQ and the
 * consumers of every `@IntegrationEventHandler`. Import once, in the root module.
 *
 * Boot (`app.init()`): options are validated, handlers discovered and checked, the outbox table
 * checked, then the broker connected (an unreachable broker is waited for in the background; one
 * that refuses fails boot). Shutdown (`app.close()`, before TypeORM closes its DataSource): consumers
 * stop taking deliveries and drain, the relay finishes its batch, then the connection closes.
 *
 * @example
 * ```ts
 * IntegrationEventsModule.forRoot({ serviceName: 'ordering', rabbitmq: { url: 'amqp://guest:guest@localhost:5672' } })
 * IntegrationEventsModule.forRootAsync({
 *   inject: [ConfigService],
 *   useFactory: (config: ConfigService) => ({ serviceName: 'ordering', rabbitmq: { url: config.getOrThrow('RABBITMQ_URL') } }),
 * })
 * ```
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    IntegrationEventsConfig,
    WakeSignal,
    RelayHandoff,
    OutboxDatabase,
    EntityManagerResolver,
    IntegrationEventPublisher,
    RabbitMqConnection,
    RabbitMqPublishingConnection,
    RabbitMqPublisher,
    RabbitMqTransport,
    TransportHost,
    OutboxRelay,
    IntegrationEventHandlerExplorer,
    MessageDispatcher,
    IntegrationEventConsumers,
    IntegrationEventConverterRegistry,
    DomainEventsBridge,
    CqrsHandlersReady,
    CorrelationContext,
    { provide: APP_INTERCEPTOR, useClass: CorrelationInterceptor },
    DeadLetterService,
    OutboxAdminService,
    TransactionTurns,
    InboxGuard,
    CleanupWorker,
    IntegrationEventsMetrics,
    IntegrationEventsHealth,
  ],
  exports: [
    IntegrationEventPublisher,
    OutboxRelay,
    IntegrationEventConsumers,
    DeadLetterService,
    OutboxAdminService,
    TransactionTurns,
    CleanupWorker,
    IntegrationEventsHealth,
  ],
})
export class IntegrationEventsModule
  extends IntegrationEventsConfigurableModule
  implements OnApplicationBootstrap, OnModuleDestroy, BeforeApplicationShutdown, OnApplicationShutdown
{
  private readonly logger = new Logger('IntegrationEvents');

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly explorer: IntegrationEventHandlerExplorer,
    private readonly database: OutboxDatabase,
    private readonly transports: TransportHost,
    private readonly wakeSignal: WakeSignal,
    private readonly relay: OutboxRelay,
    private readonly consumers: IntegrationEventConsumers,
    private readonly inbox: InboxGuard,
    private readonly cleanup: CleanupWorker,
    private readonly bridge: DomainEventsBridge,
    private readonly managers: EntityManagerResolver,
  ) {
    super();
  }

  /** Validates the options now, so a bad one fails where `forRoot()` is called. */
  static override forRoot(options: typeof INTEGRATION_EVENTS_OPTIONS_TYPE): DynamicModule {
    assertIsGlobal(options);
    resolveOptions(options);
    return super.forRoot(options);
  }

  /**
   * Checks `isGlobal` and the call's own keys now; the options themselves are checked when the factory
   * has given them.
   */
  static override forRootAsync(options: typeof INTEGRATION_EVENTS_ASYNC_OPTIONS_TYPE): DynamicModule {
    assertIsGlobal(options);
    assertAsyncOptions(options);
    return super.forRootAsync(options);
  }

  async onApplicationBootstrap(): Promise<void> {
    const { relay, consumer, serviceName, cleanup } = this.config.options;
    const handlers = this.explorer.explore();
    await this.database.assertTableExists();
    assertTransactionHostFits(this.managers, this.database, this.config, this.logger);
    if (consumer.enabled && handlers.some((handler) => handler.inbox)) {
      await this.inbox.assertReady();
      warnIfInboxCanFillThePool(this.database.dataSource, handlers, this.logger);
    }
    if (consumer.enabled && !this.config.options.inProcess) {
      const holds = { confirmTimeoutMs: relay.confirmTimeoutMs, deadLetterHook: consumer.onDeadLetter !== undefined };
      warnIfDeliveriesCanOutwaitConsumerTimeout(handlers, holds, this.logger);
    }
    // Consumers first: on a first connection their queues and bindings are declared before the
    // publishing channel opens, so an event this service also consumes is never unroutable at first boot.
    const transport = this.transports.transport;
    if (consumer.enabled) this.consumers.start(handlers);
    if (relay.enabled) transport.enablePublishing();
    transport.onReady(() => this.wakeSignal.notify());
    await transport.connect();
    if (relay.enabled) this.relay.start();
    if (cleanup.enabled) this.cleanup.start();
    this.logger.log(
      `Service "${serviceName}" started on ${transport.description}: relay ${relay.enabled ? 'on' : 'off'}, ` +
        `${consumer.enabled ? handlers.length : 0} handler(s)`,
    );
  }

  /**
   * Shutdown, first phase: stop taking deliveries and drain the handlers in flight, as early as Nest
   * lets a global module act (it runs after the application's own modules' `onModuleDestroy`).
   */
  async onModuleDestroy(): Promise<void> {
    await this.consumers.stop();
    // The domain events of the drained handlers have reached the EventBus stream: it may let go now.
    this.bridge.releaseSubscriptions();
  }

  /**
   * Second phase, before TypeORM closes its DataSource (`onApplicationShutdown`): finish the relay's
   * batch, close the connection.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.consumers.stop();
    this.bridge.releaseSubscriptions();
    await this.relay.stop();
    await this.cleanup.stop();
    await this.transports.transport.close();
  }

  /**
   * Last phase: unhook from the DataSource (the outbox's commit hook, then the cqrs bridge's). Until now, transactions still committing (HTTP requests run
   * until Nest disposes of the server, after the phase above) are checked at their commit as usual, and
   * rows they leased to the stopped relay are released for other instances, not left for the lease's
   * length. Nest runs this before TypeORM's own hook when TypeORM's module was imported first (global
   * modules shut down in the reverse of their order).
   */
  async onApplicationShutdown(): Promise<void> {
    await this.relay.releasesSettled();
    this.database.detach();
    this.bridge.detach();
  }
}

/**
 * `isGlobal` must be a boolean: Nest reads any truthy value as true, so `isGlobal: process.env.X` set to
 * "false" would leave the module global.
 */
function assertIsGlobal(options: unknown): void {
  const isGlobal = typeof options === 'object' && options !== null ? (options as { isGlobal?: unknown }).isGlobal : undefined;
  if (isGlobal !== undefined && typeof isGlobal !== 'boolean') {
    throw new InvalidIntegrationEventsOptionsError('isGlobal', isGlobal, 'use true (the default) or false');
  }
}
