/**
 * Nest wiring of the child processes: the application a user of the library writes (TypeORM, nestjs-cls
 * transactions, optionally @nestjs/cqrs and IntegrationEventsModule), with the options a workload sets.
 */
import { type DynamicModule, type INestApplicationContext, Module, type Provider } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { CqrsModule } from '@nestjs/cqrs';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { DataSource } from 'typeorm';
import { IntegrationEventsModule, type IntegrationEventsModuleOptions } from 'nestjs-integration-events';
import { DATABASE_URL, RABBITMQ_URL } from './helpers';

export interface AppSpec {
  /** IntegrationEventsModule options (serviceName, exchange and outbox schema are filled in); omit for no library. */
  integrationEvents?: Partial<IntegrationEventsModuleOptions> & { serviceName: string; exchange: string; schema: string };
  cqrs?: boolean;
  /** Size of the TypeORM pool. */
  poolMax?: number;
  /** The pg pool's idleTimeoutMillis (0: idle connections are kept); pg's own 10 s when omitted. */
  poolIdleMs?: number;
  providers: Provider[];
}

export async function createApp(spec: AppSpec): Promise<INestApplicationContext> {
  const imports: DynamicModule[] = [
    TypeOrmModule.forRoot({
      type: 'postgres',
      url: DATABASE_URL,
      extra: { max: spec.poolMax ?? 10, ...(spec.poolIdleMs === undefined ? {} : { idleTimeoutMillis: spec.poolIdleMs }) },
    }),
    ClsModule.forRoot({
      global: true,
      plugins: [
        new ClsPluginTransactional({
          imports: [TypeOrmModule],
          adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }),
        }),
      ],
    }),
  ];
  if (spec.cqrs) imports.push(CqrsModule.forRoot());
  if (spec.integrationEvents) {
    const { exchange, schema, ...options } = spec.integrationEvents;
    imports.push(
      IntegrationEventsModule.forRoot({
        ...options,
        rabbitmq: { url: RABBITMQ_URL, exchange },
        outbox: { schema },
        inbox: { schema, ...(options.inbox ?? {}) },
      }),
    );
  }
  @Module({})
  class BenchAppModule {}
  return NestFactory.createApplicationContext(
    { module: BenchAppModule, imports, providers: spec.providers },
    { logger: ['error', 'warn'] },
  );
}
