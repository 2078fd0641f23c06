import { type DynamicModule, Module } from '@nestjs/common';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import type { MixedList } from 'typeorm';
import type { DatabaseChoice } from './example-config';

export interface PersistenceOptions {
  readonly database: DatabaseChoice;
  /** The service's name: its schema on PostgreSQL, and its nestjs-cls transaction connection name. */
  readonly service: string;
  readonly entities: MixedList<Function>;
  readonly migrations: MixedList<Function>;
}

/**
 * What each example service wires for its database: TypeORM on PostgreSQL (its own schema) or on an
 * in-memory SQLite database, migrations run at start (the library's outbox and inbox among them), and
 * nestjs-cls transactions under the service's own connection name. The DataSource and the transaction
 * host are both named after the service, so two services in one process (embedded mode) never share
 * one: `@Transactional('<service>')`, `@InjectTransactionHost('<service>')`.
 */
@Module({})
export class PersistenceModule {
  static forRoot(options: PersistenceOptions): DynamicModule {
    const common = {
      // Named after the service: two services in one process (embedded mode) must not share a name.
      name: options.service,
      entities: options.entities,
      migrations: options.migrations,
      migrationsRun: true,
      migrationsTableName: `${options.service}_migrations`,
    };
    return {
      module: PersistenceModule,
      imports: [
        TypeOrmModule.forRoot(
          options.database.kind === 'postgres'
            ? // A pool larger than the inbox handlers' concurrency (10 each): each of their calls holds a connection.
              // Idle connections kept (no reconnect after a quiet spell), and waits on locks and statements
              // bounded below the handlers' 60 s timeout (a timed-out call keeps its connection until they end).
              {
                type: 'postgres',
                url: options.database.url,
                extra: { max: 20, idleTimeoutMillis: 0, lock_timeout: 30_000, statement_timeout: 50_000 },
                ...common,
              }
            : { type: 'better-sqlite3', database: ':memory:', ...common },
        ),
        ClsModule.forRoot({
          global: true,
          middleware: { mount: true },
          plugins: [
            new ClsPluginTransactional({
              connectionName: options.service,
              imports: [TypeOrmModule],
              adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: getDataSourceToken(options.service) }),
            }),
          ],
        }),
      ],
    };
  }
}
