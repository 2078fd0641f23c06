import type { DynamicModule, LoggerService, ModuleMetadata, Provider, Type } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { DataSource } from 'typeorm';
import {
  IntegrationEventConsumers,
  IntegrationEventsModule,
  type IntegrationEventsModuleOptions,
} from 'nestjs-integration-events';
import { TEST_DATABASE_URL, TEST_RABBITMQ_URL } from './services';
import type { TestNamespace } from './test-namespace';

type OptionOverrides = Partial<Omit<IntegrationEventsModuleOptions, 'rabbitmq'>> & {
  rabbitmq?: Partial<IntegrationEventsModuleOptions['rabbitmq']>;
};

export interface TestAppOptions {
  /** A logger to use instead of the default (errors only; everything with TEST_LOGS=1). */
  logger?: LoggerService;
  providers?: Provider[];
  imports?: ModuleMetadata['imports'];
  options?: OptionOverrides;
  /** Replace the whole IntegrationEventsModule import (e.g. to test forRootAsync). */
  integrationEventsModule?: DynamicModule;
}

/** The module options a test app uses: everything namespaced, short timings so tests run fast. */
export function testOptions(ns: TestNamespace, overrides: OptionOverrides = {}): IntegrationEventsModuleOptions {
  const { inProcess, rabbitmq, ...rest } = overrides;
  return {
    ...rest,
    serviceName: overrides.serviceName ?? ns.serviceName,
    ...(inProcess
      ? { inProcess: { exchange: ns.exchange, ...inProcess } }
      : { rabbitmq: { url: TEST_RABBITMQ_URL, exchange: ns.exchange, ...rabbitmq } }),
    outbox: { schema: ns.schema, ...overrides.outbox },
    relay: { pollIntervalMs: 200, ...overrides.relay },
    consumer: { shutdownTimeoutMs: 2_000, ...overrides.consumer },
  };
}

/**
 * The infrastructure modules a user's application has: TypeORM on PostgreSQL and nestjs-cls transactions
 * (with the adapter's `defaultTxOptions`, if given).
 */
export function infrastructureImports(
  ns: TestNamespace,
  defaultTxOptions?: ConstructorParameters<typeof TransactionalAdapterTypeOrm>[0]['defaultTxOptions'],
): NonNullable<ModuleMetadata['imports']> {
  return [
    TypeOrmModule.forRoot({ type: 'postgres', url: TEST_DATABASE_URL, schema: ns.schema, extra: { max: 8, allowExitOnIdle: true } }),
    ClsModule.forRoot({
      global: true,
      plugins: [
        new ClsPluginTransactional({
          imports: [TypeOrmModule],
          adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource, ...(defaultTxOptions ? { defaultTxOptions } : {}) }),
        }),
      ],
    }),
  ];
}

/**
 * An application with two DataSources: its own (the default), where its nestjs-cls transactions run
 * (a plugin named `connectionName`, if given), and `events`, on the namespace's schema, for the library
 * (`dataSourceName: 'events'`).
 */
export function transactionsOnAnotherDataSource(ns: TestNamespace, connectionName?: string): NonNullable<ModuleMetadata['imports']> {
  return [
    TypeOrmModule.forRoot({ type: 'postgres', url: TEST_DATABASE_URL, extra: { allowExitOnIdle: true } }),
    TypeOrmModule.forRoot({ name: 'events', type: 'postgres', url: TEST_DATABASE_URL, schema: ns.schema, extra: { allowExitOnIdle: true } }),
    ClsModule.forRoot({
      global: true,
      plugins: [
        new ClsPluginTransactional({
          ...(connectionName ? { connectionName } : {}),
          imports: [TypeOrmModule],
          adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }),
        }),
      ],
    }),
  ];
}

/**
 * Builds and starts (`init()`) a Nest application with the library wired as a user would wire it,
 * against the namespace. Handler queues are tracked for cleanup.
 */
export async function startTestApp(ns: TestNamespace, options: TestAppOptions = {}): Promise<TestingModule> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      ...infrastructureImports(ns),
      options.integrationEventsModule ?? IntegrationEventsModule.forRoot(testOptions(ns, options.options)),
      ...(options.imports ?? []),
    ],
    providers: options.providers ?? [],
  }).compile();
  moduleRef.useLogger(options.logger ?? (process.env.TEST_LOGS ? console : ['error']));
  try {
    await moduleRef.init();
  } catch (error) {
    // A boot that failed after the consumers declared their queues (a later module's hook): they go with
    // the namespace too.
    try {
      trackHandlerQueues(ns, moduleRef);
    } catch {
      // Failed before the consumers were known: nothing declared.
    }
    await moduleRef.close().catch(() => undefined);
    throw error;
  }
  trackHandlerQueues(ns, moduleRef);
  return moduleRef;
}

/**
 * What booting `startTestApp(ns, options)` comes to, for tests of what boot refuses: `'booted'` (the
 * application closed again at once, so none is left running), or the message boot failed with.
 */
export async function bootMessage(ns: TestNamespace, options: TestAppOptions = {}): Promise<string> {
  return startTestApp(ns, options).then(
    async (app) => {
      await app.close();
      return 'booted';
    },
    (error: Error) => error.message,
  );
}

/**
 * For `await expect(bootRefused(ns, options)).rejects...`: rejects with what boot failed with, and when
 * boot succeeds (a regression) closes the application before resolving, so none is left running.
 */
export async function bootRefused(ns: TestNamespace, options: TestAppOptions = {}): Promise<'booted'> {
  const app = await startTestApp(ns, options);
  await app.close();
  return 'booted';
}

/** Tracks every queue the app's handlers declare (their own, dead-letter and wait queues) for cleanup. */
export function trackHandlerQueues(ns: TestNamespace, app: Pick<TestingModule, 'get'>): void {
  for (const handler of app.get(IntegrationEventConsumers).handlers) {
    for (const queue of [handler.queue, handler.deadLetterQueue, ...handler.waitQueues]) ns.trackQueue(queue);
  }
}

export type { Type };
