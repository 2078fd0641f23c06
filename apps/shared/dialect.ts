import type { QueryRunner } from 'typeorm';

/** True when a migration runs on SQLite (embedded mode) rather than PostgreSQL. */
export function onSqlite(queryRunner: QueryRunner): boolean {
  return queryRunner.connection.options.type === 'better-sqlite3';
}
