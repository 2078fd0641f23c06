import { type DynamicModule, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { DataSource, type MixedList } from 'typeorm';

export interface PersistenceOptions {
  readonly databaseUrl: string;
  /** The service's own schema; its tables and its migrations table live there. */
  readonly schema: string;
  readonly entities: MixedList<Function>;
  readonly migrations: MixedList<Function>;
}

/**
 * What each example service wires for its database: TypeORM on PostgreSQL, migrations run at start
 * (the library's outbox migration among them), and nestjs-cls transactions (`@Transactional()`).
 */
@Module({})
export class PersistenceModule {
  static forRoot(options: PersistenceOptions): DynamicModule {
    return {
      module: PersistenceModule,
      imports: [
        TypeOrmModule.forRoot({
          type: 'postgres',
          url: options.databaseUrl,
          entities: options.entities,
          migrations: options.migrations,
          migrationsRun: true,
          migrationsTableName: `${options.schema}_migrations`,
        }),
        ClsModule.forRoot({
          global: true,
          middleware: { mount: true },
          plugins: [
            new ClsPluginTransactional({
              imports: [TypeOrmModule],
              adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }),
            }),
          ],
        }),
      ],
    };
  }
}
