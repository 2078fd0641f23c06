import type { ModuleMetadata } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { DataSource } from 'typeorm';
import { createInboxMigration, createOutboxMigration } from 'nestjs-integration-events';

/**
 * The documented set-up for users' tests, less the testing module: SQLite in memory with the library's
 * tables, and nestjs-cls transactions on it. A fresh database for each application compiled with it.
 */
export function sqlitePersistence(): NonNullable<ModuleMetadata['imports']> {
  return [
    TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', migrations: [createOutboxMigration(), createInboxMigration()], migrationsRun: true }),
    ClsModule.forRoot({
      global: true,
      plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })],
    }),
  ];
}
