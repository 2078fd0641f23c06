import { type DynamicModule, Module, type OnModuleDestroy } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { IntegrationEventsModule } from '../integration-events.module';
import type { IntegrationEventsModuleOptions } from '../options/integration-events-module-options.interface';
import { OutboxDatabase } from '../outbox/outbox-database';
import { OutboxRelay } from '../relay/outbox.relay';
import { InProcessBroker } from '../transport/in-process/in-process-broker';
import { IntegrationEventsTestKit } from './integration-events.test-kit';

/** Options of `IntegrationEventsTestingModule.forRoot()`: the module's, minus the transport. */
export type IntegrationEventsTestingOptions = Omit<IntegrationEventsModuleOptions, 'rabbitmq' | 'inProcess'> & {
  /** Share one broker between the services of a test so they talk to each other. @default a new one */
  broker?: InProcessBroker;
};

/**
 * `IntegrationEventsModule` for tests: on an in-process broker, with short delays (relay poll 20 ms,
 * retries 10 ms doubling to 50 ms, cleanup off), and an `IntegrationEventsTestKit` to inject.
 *
 * @example
 * ```ts
 * const moduleRef = await Test.createTestingModule({
 *   imports: [
 *     TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', migrations: [createOutboxMigration(), createInboxMigration()], migrationsRun: true }),
 *     ClsModule.forRoot({ global: true, plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })] }),
 *     IntegrationEventsTestingModule.forRoot({ serviceName: 'payments' }),
 *   ],
 *   providers: [OrderCreatedIntegrationEventHandler, ...],
 * }).compile();
 * await moduleRef.init();
 * const kit = moduleRef.get(IntegrationEventsTestKit);
 * await kit.deliver(new OrderCreatedIntegrationEvent(orderId, ...));
 * await kit.drain();
 * expect(kit.publishedEvents(OrderPaidIntegrationEvent)).toEqual([expect.objectContaining({ orderId })]);
 * ```
 */
@Module({})
export class IntegrationEventsTestingModule implements OnModuleDestroy {
  constructor(private readonly moduleRef: ModuleRef) {}

  static forRoot(options: IntegrationEventsTestingOptions): DynamicModule {
    const { broker = new InProcessBroker(), ...rest } = options;
    const exchange = 'integration-events';
    return {
      module: IntegrationEventsTestingModule,
      imports: [
        IntegrationEventsModule.forRoot({
          ...rest,
          inProcess: { broker, exchange },
          relay: { pollIntervalMs: 20, ...rest.relay },
          consumer: {
            shutdownTimeoutMs: 1_000,
            ...rest.consumer,
            retry: { initialDelayMs: 10, maxDelayMs: 50, ...rest.consumer?.retry },
          },
          cleanup: { enabled: false, ...rest.cleanup },
        }),
      ],
      providers: [
        { provide: InProcessBroker, useValue: broker },
        {
          provide: IntegrationEventsTestKit,
          inject: [ModuleRef],
          useFactory: (moduleRef: ModuleRef) =>
            new IntegrationEventsTestKit(
              broker,
              exchange,
              options.serviceName,
              () => ({ relay: moduleRef.get(OutboxRelay, { strict: false }), database: moduleRef.get(OutboxDatabase, { strict: false }) }),
            ),
        },
      ],
      exports: [IntegrationEventsTestKit, InProcessBroker],
    };
  }

  onModuleDestroy(): void {
    this.moduleRef.get(IntegrationEventsTestKit, { strict: false }).dispose();
  }
}
