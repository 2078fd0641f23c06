import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { createInboxMigration, createOutboxMigration, UnsupportedDatabaseError } from 'nestjs-integration-events';
import { TEST_DATABASE_URL } from './support/services';
import { TestNamespace } from './support/test-namespace';

/** The shipped migration, run the way users run it, and the index that keeps the claim fast. */
describe('outbox migration', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await TestNamespace.create();
  });

  afterAll(async () => {
    await ns?.cleanup();
  });

  it('runs through TypeORM (migrationsRun) and reverts cleanly', async () => {
    const schema = `${ns.schema}_m`;
    const dataSource = new DataSource({
      type: 'postgres',
      url: TEST_DATABASE_URL,
      migrations: [createOutboxMigration({ schema, table: 'my_outbox' })],
      migrationsTableName: `${ns.schema}_migrations`,
    });
    await dataSource.initialize();
    try {
      await dataSource.runMigrations();
      const [row] = await dataSource.query(`SELECT to_regclass('"${schema}"."my_outbox"') AS found`);
      expect(row.found).toBe(`${schema}.my_outbox`);
      await dataSource.undoLastMigration();
      const [after] = await dataSource.query(`SELECT to_regclass('"${schema}"."my_outbox"') AS found`);
      expect(after.found).toBeNull();
    } finally {
      await dataSource.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await dataSource.query(`DROP TABLE IF EXISTS "${ns.schema}_migrations"`);
      await dataSource.destroy();
    }
  });

  it('runs as a role that may not create schemas, into a schema made for it', async () => {
    // As a DBA sets it up: the application's role owns its schema, but has no CREATE on the database.
    const role = `${ns.schema}_app`;
    const schema = `${ns.schema}_dba`;
    const admin = await ns.sql();
    // A password too, for a TEST_DATABASE_URL whose server does not trust local logins.
    const password = randomUUID();
    await admin.query(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}'`);
    await admin.query(`CREATE SCHEMA "${schema}" AUTHORIZATION "${role}"`);
    const url = new URL(TEST_DATABASE_URL);
    url.username = role;
    url.password = password;
    const dataSource = new DataSource({
      type: 'postgres',
      url: url.toString(),
      schema,
      migrations: [createOutboxMigration({ schema }), createInboxMigration({ schema })],
    });
    try {
      const [{ allowed }] = (await admin.query('SELECT has_database_privilege($1, current_database(), $2) AS allowed', [role, 'CREATE'])).rows;
      expect(allowed).toBe(false);
      await dataSource.initialize();
      await dataSource.runMigrations();
      const [row] = await dataSource.query(`SELECT to_regclass('"${schema}".integration_events_outbox') AS outbox, to_regclass('"${schema}".integration_events_inbox') AS inbox`);
      expect(row).toEqual({ outbox: `${schema}.integration_events_outbox`, inbox: `${schema}.integration_events_inbox` });
    } finally {
      if (dataSource.isInitialized) await dataSource.destroy();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.query(`DROP ROLE IF EXISTS "${role}"`);
    }
  });

  it('refuses a database the library does not support with UnsupportedDatabaseError, before any statement', async () => {
    for (const type of ['mysql', 'mariadb', 'cockroachdb']) {
      const statements: string[] = [];
      // Only what the migration reads of a query runner: its DataSource's type, and statements.
      const queryRunner = { connection: { options: { type } }, query: async (sql: string) => statements.push(sql) } as never;
      for (const Migration of [createOutboxMigration(), createInboxMigration()]) {
        await expect(new Migration().up(queryRunner)).rejects.toThrow(UnsupportedDatabaseError);
        await expect(new Migration().up(queryRunner)).rejects.toThrow(`this one is "${type}"`);
      }
      expect(statements).toEqual([]);
    }
  });

  it("writes SQLite's tables through the sqlite driver too (a migration DataSource of its own on the application's file)", async () => {
    for (const type of ['sqlite', 'better-sqlite3']) {
      const statements: string[] = [];
      const queryRunner = { connection: { options: { type } }, query: async (sql: string) => statements.push(sql) } as never;
      for (const Migration of [createOutboxMigration(), createInboxMigration()]) await new Migration().up(queryRunner);
      expect(statements.join('\n')).toContain('seq           INTEGER PRIMARY KEY AUTOINCREMENT');
      expect(statements.join('\n')).toContain('handled_at INTEGER NOT NULL');
    }
  });

  it('keeps one migration name for the default table, whether its name is given or not (TypeORM would run a second)', () => {
    const name = (migration: new () => { name?: string }) => new migration().name;
    expect(name(createOutboxMigration({ table: 'integration_events_outbox' }))).toBe(name(createOutboxMigration()));
    expect(name(createInboxMigration({ table: 'integration_events_inbox' }))).toBe(name(createInboxMigration()));
    // Another table, or a schema, is another migration.
    expect(name(createOutboxMigration({ table: 'outbox' }))).not.toBe(name(createOutboxMigration()));
    expect(name(createOutboxMigration({ schema: 'ordering' }))).not.toBe(name(createOutboxMigration()));
    expect(name(createOutboxMigration({ schema: 'ordering', table: 'integration_events_outbox' }))).toBe(name(createOutboxMigration({ schema: 'ordering' })));
  });

  it('refuses a schema or table name that is not a plain SQL identifier', () => {
    expect(() => createOutboxMigration({ table: 'outbox"; DROP TABLE users; --' })).toThrow(/not a plain SQL identifier/);
  });

  it('keeps the relay claim an index scan with hundreds of thousands of sent rows', async () => {
    const db = await ns.sql();
    await db.query(
      `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, status, sent_at)
       SELECT gen_random_uuid(), 'x.sent', 1, '{}', '{}', now(), 'sent', now() FROM generate_series(1, 300000)`,
    );
    await ns.insertOutboxRows(50);
    await db.query(`ANALYZE ${ns.outboxTable}`);
    // The relay's claim as it runs it (PostgresOutboxStore), its parameters written in.
    const t = ns.outboxTable;
    const { rows } = await db.query(
      `EXPLAIN UPDATE ${t} SET locked_until = now() + 30000 * interval '1 millisecond', lease_token = gen_random_uuid() WHERE id IN (
         SELECT id FROM ${t} WHERE status = 'pending' AND available_at <= now() AND (locked_until IS NULL OR locked_until <= now())
         ORDER BY available_at, seq LIMIT 200 FOR UPDATE SKIP LOCKED)
       RETURNING id, event_name, event_version, payload, headers, occurred_at, attempts, seq`,
    );
    const plan = rows.map((r: { 'QUERY PLAN': string }) => r['QUERY PLAN']).join('\n');
    expect(plan).toMatch(/Index Scan using integration_events_outbox_pending_idx/);
    expect(plan).not.toMatch(/Seq Scan/);
  });
});
