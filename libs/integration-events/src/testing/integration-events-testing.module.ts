import { type DynamicModule, Module, type OnApplicationShutdown, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { IntegrationEventConsumers } from '../consumer/integration-event-consumers';
import { IntegrationEventsModule } from '../integration-events.module';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import type { IntegrationEventsModuleOptions } from '../options/integration-events-module-options.interface';
import { InvalidIntegrationEventsOptionsError } from '../errors/invalid-options.error';
import { resolveOptions, TOP_LEVEL_OPTION_KEYS } from '../options/resolve-options';
import { OutboxDatabase } from '../outbox/outbox-database';
import { OutboxRelay } from '../relay/outbox.relay';
import { InProcessBroker } from '../transport/in-process/in-process-broker';
import { IntegrationEventsTestKit } from './integration-events.test-kit';

/** Options of `IntegrationEventsTestingModule.forRoot()`: the module's, minus the transport. */
export type IntegrationEventsTestingOptions = Omit<IntegrationEventsModuleOptions, 'rabbitmq' | 'inProcess'> & {
  /**
   * Share one broker between the services of a test so they talk to each other (it is then yours to
   * close). @default a new one for each application, closed when the application closes
   */
  broker?: InProcessBroker;
  /**
   * As for `IntegrationEventsModule.forRoot()`: with `false`, `IntegrationEventPublisher` is injectable
   * only where this module is imported. @default true
   */
  isGlobal?: boolean;
};

/** The longest a retry copy waits in the testing module's broker, whatever the handler's policy says. */
const TESTING_MAX_RETRY_DELAY_MS = 50;

/**
 * The testing module's defaults under the user's options group. A value that is no object (`null`, a
 * number) is passed on as given, so the options check refuses it as `IntegrationEventsModule.forRoot()`
 * does, instead of a spread turning it into the defaults.
 */
function withTestingDefaults<T extends object>(defaults: T, given: T | undefined): T {
  if (given === undefined) return defaults;
  if (typeof given !== 'object' || given === null || Array.isArray(given)) return given;
  // A key given as undefined (a shared options factory's `shutdownTimeoutMs: config.shutdownMs`, unset
  // under test) keeps the testing default, as a key left out does, not the module's.
  const merged: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [key, value] of Object.entries(given)) if (value !== undefined || !(key in defaults)) merged[key] = value;
  return merged as T;
}

/** The testing module's own options: the module's, less the transport, plus `broker`. */
const TESTING_OPTION_KEYS: readonly string[] = [...TOP_LEVEL_OPTION_KEYS.filter((key) => key !== 'rabbitmq' && key !== 'inProcess'), 'broker'];

/**
 * Refuses here what the module's own check would report under names the caller never gave: a
 * transport (which the testing module would otherwise overwrite or report as "given with rabbitmq"), a
 * `broker` that is not one, an unknown key.
 */
function assertTestingOptions(options: unknown): asserts options is IntegrationEventsTestingOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidIntegrationEventsOptionsError('(options)', options, 'pass an options object to IntegrationEventsTestingModule.forRoot()');
  }
  for (const key of Object.keys(options)) {
    // Given as undefined (a shared options factory's `rabbitmq: url ? … : undefined`): left out.
    if ((key === 'rabbitmq' || key === 'inProcess') && (options as Record<string, unknown>)[key] !== undefined) {
      throw new InvalidIntegrationEventsOptionsError(
        key,
        '(given to the testing module)',
        'leave it out: IntegrationEventsTestingModule runs on an in-process broker of its own, each retry held at most ' +
          `${TESTING_MAX_RETRY_DELAY_MS} ms (give "broker" to share one between the services of a test; for other ` +
          'retry delays, IntegrationEventsModule.forRoot({ inProcess: { broker, maxRetryDelayMs } }))',
      );
    }
    if (!TESTING_OPTION_KEYS.includes(key) && key !== 'rabbitmq' && key !== 'inProcess') {
      throw new InvalidIntegrationEventsOptionsError(key, '(unknown option)', `remove it; the known options here are ${TESTING_OPTION_KEYS.join(', ')}`);
    }
  }
  const { broker } = options as { broker?: unknown };
  if (broker !== undefined && !(broker instanceof InProcessBroker)) {
    throw new InvalidIntegrationEventsOptionsError(
      'broker',
      broker === null ? null : typeof broker,
      'pass an InProcessBroker instance (new InProcessBroker()), the same for every service of the test, or leave it out',
    );
  }
}

/** Whether the broker was made for this application (so this module closes it). */
const BROKER_IS_OWN = Symbol('IntegrationEventsTesting:brokerIsOwn');

/** Provides the application's broker to the library's module and to the kit. */
@Module({})
class TestingBrokerModule {}

/**
 * `IntegrationEventsModule` for tests: on an in-process broker, with short delays (relay poll 20 ms,
 * each retry held at most 50 ms whatever the handler's policy says, handlers given 1 s at shutdown
 * instead of 10 s, cleanup off), and an
 * `IntegrationEventsTestKit` to inject. Each application gets a broker of its own unless `broker` is
 * given, so nothing one test leaves in it reaches the next.
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
export class IntegrationEventsTestingModule implements OnModuleInit, OnModuleDestroy, OnApplicationShutdown {
  constructor(private readonly moduleRef: ModuleRef) {}

  static forRoot(options: IntegrationEventsTestingOptions): DynamicModule {
    assertTestingOptions(options);
    const { broker: sharedBroker, ...given } = options;
    // A transport given as undefined is dropped here: the module's own check would count the key.
    const { rabbitmq: _rabbitmq, inProcess: _inProcess, isGlobal, ...rest } = given as typeof given & { rabbitmq?: unknown; inProcess?: unknown };
    const exchange = 'integration-events';
    const moduleOptions = (broker: InProcessBroker): IntegrationEventsModuleOptions => ({
      ...rest,
      inProcess: { broker, exchange, maxRetryDelayMs: TESTING_MAX_RETRY_DELAY_MS },
      relay: withTestingDefaults({ pollIntervalMs: 20 }, rest.relay),
      consumer: withTestingDefaults({ shutdownTimeoutMs: 1_000 }, rest.consumer),
      cleanup: withTestingDefaults({ enabled: false }, rest.cleanup),
    });
    // A bad option fails here, where forRoot() is called, as with IntegrationEventsModule.forRoot().
    resolveOptions(moduleOptions(sharedBroker ?? new InProcessBroker()));
    const brokerModule: DynamicModule = {
      module: TestingBrokerModule,
      providers: [
        // A factory, not a value: each application compiled from this module gets a broker of its own.
        { provide: InProcessBroker, useFactory: () => sharedBroker ?? new InProcessBroker() },
        { provide: BROKER_IS_OWN, useValue: sharedBroker === undefined },
      ],
      exports: [InProcessBroker, BROKER_IS_OWN],
    };
    // `isGlobal` belongs to the module, not to its options (forRootAsync() checks it is a boolean).
    const libraryModule = IntegrationEventsModule.forRootAsync({ isGlobal, imports: [brokerModule], inject: [InProcessBroker], useFactory: moduleOptions });
    return {
      module: IntegrationEventsTestingModule,
      imports: [brokerModule, libraryModule],
      providers: [
        {
          provide: IntegrationEventsTestKit,
          inject: [InProcessBroker, ModuleRef],
          useFactory: (broker: InProcessBroker, moduleRef: ModuleRef) =>
            new IntegrationEventsTestKit(
              broker,
              exchange,
              options.serviceName,
              () => ({
                relay: moduleRef.get(OutboxRelay, { strict: false }),
                database: moduleRef.get(OutboxDatabase, { strict: false }),
                consumers: moduleRef.get(IntegrationEventConsumers, { strict: false }),
                config: moduleRef.get(IntegrationEventsConfig, { strict: false }),
              }),
            ),
        },
      ],
      // Re-exported: with `isGlobal: false`, the module that imports this one injects the publisher.
      exports: [IntegrationEventsTestKit, brokerModule, libraryModule],
    };
  }

  /** After the library's module (imported, so initialised first) has found the DataSource. */
  onModuleInit(): void {
    this.moduleRef.get(IntegrationEventsTestKit, { strict: false }).watchTransactions();
  }

  onModuleDestroy(): void {
    this.moduleRef.get(IntegrationEventsTestKit, { strict: false }).dispose();
  }

  /**
   * After the library's `beforeApplicationShutdown` (consumers stopped, relay done, transport closed): a
   * broker made for this application closes with it. The library's own `onApplicationShutdown` may run
   * after this one (it only unhooks from the DataSource).
   */
  onApplicationShutdown(): void {
    if (this.moduleRef.get<boolean>(BROKER_IS_OWN, { strict: false })) this.moduleRef.get(InProcessBroker, { strict: false }).close();
  }
}
