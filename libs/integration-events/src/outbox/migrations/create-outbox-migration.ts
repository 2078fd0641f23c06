import { createHash } from 'node:crypto';
import type { MigrationInterface, QueryRunner } from 'typeorm';
import { UnsupportedDatabaseError } from '../../errors/unsupported-database.error';
import { DEFAULT_OPTIONS } from '../../options/default-options';
import { OutboxTableName } from '../outbox-table-name';
import { createSchemaIfMissing } from './create-schema-if-missing';

/**
 * The database the migration runs on: PostgreSQL, or SQLite (the embedded store, which the module runs on
 * better-sqlite3).
 * @throws UnsupportedDatabaseError on any other, as the module does at boot, instead of a syntax error
 *   from the PostgreSQL DDL (a migration may run before the module boots)
 */
export function migrationDialect(queryRunner: QueryRunner): 'postgres' | 'sqlite' {
  const type = (queryRunner as { connection?: { options?: { type?: unknown } } }).connection?.options?.type;
  // A bare object with `query()` standing in for a query runner (a script, a test) gets PostgreSQL's.
  if (type === undefined || type === 'postgres') return 'postgres';
  // Also the `sqlite` driver: a migration run through a DataSource of its own on the file the
  // application opens with better-sqlite3 writes the same tables.
  if (type === 'better-sqlite3' || type === 'sqlite') return 'sqlite';
  throw new UnsupportedDatabaseError(String(type));
}

/** The SQLite outbox: the same columns, times as epoch milliseconds, no schemas. */
async function createSqliteOutbox(queryRunner: QueryRunner, table: OutboxTableName): Promise<void> {
  if (table.schema) throw new Error(`SQLite has no schemas: leave the outbox schema ("${table.schema}") out on SQLite`);
  const t = table.qualified;
  await queryRunner.query(`
    CREATE TABLE ${t} (
      seq           INTEGER PRIMARY KEY AUTOINCREMENT,
      id            TEXT    NOT NULL UNIQUE,
      event_name    TEXT    NOT NULL,
      event_version INTEGER NOT NULL,
      payload       TEXT    NOT NULL,
      headers       TEXT    NOT NULL,
      occurred_at   TEXT    NOT NULL,
      created_at    INTEGER NOT NULL,
      available_at  INTEGER NOT NULL,
      status        TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'unroutable', 'skipped')),
      attempts      INTEGER NOT NULL DEFAULT 0,
      locked_until  INTEGER NULL,
      lease_token   TEXT    NULL,
      last_error    TEXT    NULL,
      sent_at       INTEGER NULL
    )`);
  await queryRunner.query(`CREATE INDEX ${table.derived('pending_idx')} ON ${t} (available_at, seq) WHERE status = 'pending'`);
  await queryRunner.query(`CREATE INDEX ${table.derived('sent_at_idx')} ON ${t} (sent_at) WHERE status = 'sent'`);
}

/** Where to create the outbox table; must match the module's `outbox` options. */
export interface OutboxMigrationOptions {
  /** @default undefined (the connection's search path) */
  schema?: string;
  /** @default 'integration_events_outbox' */
  table?: string;
}

/** Timestamp TypeORM orders this migration by (its name must end in one). */
const MIGRATION_TIMESTAMP = 1764144000000;

/**
 * Builds the TypeORM migration that creates the outbox table, for a schema and table name of your
 * choosing (the same as the module's `outbox` options). Add the returned class to your DataSource's
 * `migrations` and run them as usual (`migrationsRun: true`, or `typeorm migration:run`).
 *
 * @example
 * ```ts
 * TypeOrmModule.forRoot({
 *   type: 'postgres',
 *   migrations: [createOutboxMigration({ schema: 'ordering' }), ...yourMigrations],
 *   migrationsRun: true,
 * })
 * ```
 */
export function createOutboxMigration(options: OutboxMigrationOptions = {}): new () => MigrationInterface {
  const table = new OutboxTableName(options.schema, options.table ?? DEFAULT_OPTIONS.outbox.table);
  const t = table.qualified;
  // One migration per schema and table: the name carries a hash of both, so `a` + `b_c` and `a_b` + `c`
  // (which would read the same joined with "_") stay two migrations.
  // The default table given by name is the default table: the same migration, not a second one that
  // TypeORM would run on a database where the first has made the table already.
  const suffix =
    options.schema || table.table !== DEFAULT_OPTIONS.outbox.table
      ? `_${createHash('sha256').update(`${options.schema ?? ''}\u0000${table.table}`).digest('hex').slice(0, 10)}`
      : '';

  return class CreateIntegrationEventsOutbox implements MigrationInterface {
    // TypeORM identifies a migration by this name (one per schema/table) and orders by its timestamp.
    readonly name = `CreateIntegrationEventsOutbox${suffix}${MIGRATION_TIMESTAMP}`;

    async up(queryRunner: QueryRunner): Promise<void> {
      if (migrationDialect(queryRunner) === 'sqlite') return createSqliteOutbox(queryRunner, table);
      if (table.schema) await createSchemaIfMissing(queryRunner, table.schema);
      await queryRunner.query(`
        CREATE TABLE ${t} (
          seq           bigint GENERATED ALWAYS AS IDENTITY,
          id            uuid         NOT NULL PRIMARY KEY,
          event_name    varchar(200) NOT NULL,
          event_version integer      NOT NULL,
          payload       text         NOT NULL,
          headers       jsonb        NOT NULL,
          occurred_at   timestamptz  NOT NULL,
          created_at    timestamptz  NOT NULL DEFAULT now(),
          available_at  timestamptz  NOT NULL DEFAULT now(),
          status        varchar(16)  NOT NULL DEFAULT 'pending'
                        CONSTRAINT ${table.derived('status_check')} CHECK (status IN ('pending', 'sent', 'unroutable', 'skipped')),
          attempts      integer      NOT NULL DEFAULT 0,
          locked_until  timestamptz  NULL,
          lease_token   uuid         NULL,
          last_error    text         NULL,
          sent_at       timestamptz  NULL
        )`);
      // The relay's claim reads due pending rows in (available_at, seq) order. A partial index holds only
      // pending rows, so the claim stays an index range scan however many sent rows have piled up, and
      // rows waiting for a retry (available_at in the future) sit past the range instead of in front of it.
      await queryRunner.query(
        `CREATE INDEX ${table.derived('pending_idx')} ON ${t} (available_at, seq) WHERE status = 'pending'`,
      );
      // Retention deletes sent rows by age without scanning pending ones.
      await queryRunner.query(`CREATE INDEX ${table.derived('sent_at_idx')} ON ${t} (sent_at) WHERE status = 'sent'`);
    }

    async down(queryRunner: QueryRunner): Promise<void> {
      await queryRunner.query(`DROP TABLE ${t}`);
    }
  };
}
