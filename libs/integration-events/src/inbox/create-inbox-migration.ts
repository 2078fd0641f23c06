import { createHash } from 'node:crypto';
import type { MigrationInterface, QueryRunner } from 'typeorm';
import { DEFAULT_OPTIONS } from '../options/default-options';
import { migrationDialect } from '../outbox/migrations/create-outbox-migration';
import { OutboxTableName } from '../outbox/outbox-table-name';
import { createSchemaIfMissing } from '../outbox/migrations/create-schema-if-missing';

/** Where to create the inbox table; must match the module's `inbox` options. */
export interface InboxMigrationOptions {
  /** @default undefined (the connection's search path) */
  schema?: string;
  /** @default 'integration_events_inbox' */
  table?: string;
}

const MIGRATION_TIMESTAMP = 1764144000100;

/**
 * Builds the TypeORM migration that creates the inbox table (one row per message a handler has handled,
 * for idempotent consumption). Add it to your DataSource's `migrations` beside `createOutboxMigration()`.
 *
 * @example
 * ```ts
 * migrations: [createOutboxMigration({ schema: 'payments' }), createInboxMigration({ schema: 'payments' }), ...yours]
 * ```
 */
export function createInboxMigration(options: InboxMigrationOptions = {}): new () => MigrationInterface {
  const table = new OutboxTableName(options.schema, options.table ?? DEFAULT_OPTIONS.inbox.table);
  const t = table.qualified;
  // The default table given by name is the default table: the same migration, not a second one that
  // TypeORM would run on a database where the first has made the table already.
  const suffix =
    options.schema || table.table !== DEFAULT_OPTIONS.inbox.table
      ? `_${createHash('sha256').update(`${options.schema ?? ''}\u0000${table.table}`).digest('hex').slice(0, 10)}`
      : '';

  return class CreateIntegrationEventsInbox implements MigrationInterface {
    readonly name = `CreateIntegrationEventsInbox${suffix}${MIGRATION_TIMESTAMP}`;

    async up(queryRunner: QueryRunner): Promise<void> {
      if (migrationDialect(queryRunner) === 'sqlite') {
        if (table.schema) throw new Error(`SQLite has no schemas: leave the inbox schema ("${table.schema}") out on SQLite`);
        await queryRunner.query(
          `CREATE TABLE ${t} (handler TEXT NOT NULL, message_id TEXT NOT NULL, handled_at INTEGER NOT NULL, PRIMARY KEY (handler, message_id))`,
        );
        await queryRunner.query(`CREATE INDEX ${table.derived('handled_at_idx')} ON ${t} (handled_at)`);
        return;
      }
      if (table.schema) await createSchemaIfMissing(queryRunner, table.schema);
      // The key is (handler's queue, message id): the queue is the handler's stable identity, so one
      // event handled by two handlers is two rows, and renaming a handler class keeps its history.
      await queryRunner.query(`
        CREATE TABLE ${t} (
          handler     varchar(200) NOT NULL,
          message_id  varchar(200) NOT NULL,
          handled_at  timestamptz  NOT NULL DEFAULT now(),
          CONSTRAINT ${table.derived('pkey')} PRIMARY KEY (handler, message_id)
        )`);
      // Retention deletes old rows by age.
      await queryRunner.query(`CREATE INDEX ${table.derived('handled_at_idx')} ON ${t} (handled_at)`);
    }

    async down(queryRunner: QueryRunner): Promise<void> {
      await queryRunner.query(`DROP TABLE ${t}`);
    }
  };
}
