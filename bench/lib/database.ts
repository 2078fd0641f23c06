/**
 * The tables of a run, made with the library's own migrations (the same shape as a user's), and the
 * queries the harness checks them with. Parent process only.
 */
import { createInboxMigration, createOutboxMigration } from 'nestjs-integration-events';
import { EVENT_NAME, sqlPayloadParts, timeOrderedUuidSql } from './contract';
import { outboxTable, withDb, type Resources } from './helpers';

export interface TableOptions {
  outbox?: boolean;
  inbox?: boolean;
  /** The business table the producers insert into. */
  orders?: boolean;
}

/** Creates the schema and, with the library's own migrations, the outbox/inbox tables in it. */
export async function createTables(resources: Resources, schema: string, tables: TableOptions): Promise<void> {
  resources.schema(schema);
  await withDb(async (db) => {
    // As much of a QueryRunner as the migrations use: query(text, parameters) giving the rows.
    const runner = { query: async (text: string, parameters?: unknown[]) => (await db.query(text, parameters)).rows } as never;
    await db.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    if (tables.outbox) await new (createOutboxMigration({ schema }))().up(runner);
    if (tables.inbox) await new (createInboxMigration({ schema }))().up(runner);
    if (tables.orders) {
      await db.query(
        `CREATE TABLE "${schema}".orders (id uuid PRIMARY KEY, customer_id text NOT NULL, amount_cents int NOT NULL, ` +
          'created_at timestamptz NOT NULL DEFAULT now())',
      );
    }
  });
}

/**
 * Inserts `rows` pending outbox rows (numbered `first`…`first + rows - 1` in their payload) in the
 * library's format (time-ordered ids, as `publish()` makes them), in chunks, then VACUUM ANALYZEs the
 * table: a committed backlog.
 */
export async function fillOutbox(schema: string, rows: number, first = 0, sourceService = 'bench'): Promise<void> {
  const { before, between, after } = sqlPayloadParts();
  const chunk = 100_000;
  await withDb(async (db) => {
    for (let start = first; start < first + rows; start += chunk) {
      const end = Math.min(first + rows, start + chunk) - 1;
      await db.query(
        `INSERT INTO ${outboxTable(schema)} (id, event_name, event_version, payload, headers, occurred_at)
         SELECT id, $1::text, 1, $2::text || g || $3::text || gen_random_uuid() || $4::text,
                jsonb_build_object('ie-event-name', $1::text, 'ie-event-version', 1,
                  'ie-occurred-at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                  'ie-source-service', $7::text, 'ie-correlation-id', id::text),
                now()
         FROM (SELECT g, ${timeOrderedUuidSql()} AS id FROM generate_series($5::int, $6::int) AS g) AS s`,
        [EVENT_NAME, before, between, after, start, end, sourceService],
      );
    }
    await db.query(`VACUUM ANALYZE ${outboxTable(schema)}`);
  });
}

/** Counts of outbox rows by status. */
export async function outboxStatus(schema: string): Promise<Record<string, number>> {
  return withDb(async (db) => {
    const { rows } = await db.query(`SELECT status, count(*)::int AS n FROM ${outboxTable(schema)} GROUP BY status`);
    return Object.fromEntries(rows.map((r: { status: string; n: number }) => [r.status, r.n]));
  });
}

/** Wall-clock ms of the last `sent_at` in the outbox (the relay's last mark). */
export async function lastSentAt(schema: string): Promise<number> {
  return withDb(async (db) => {
    const { rows } = await db.query(`SELECT extract(epoch FROM max(sent_at)) * 1000 AS t FROM ${outboxTable(schema)}`);
    return Number(rows[0].t);
  });
}

export async function countRows(table: string): Promise<number> {
  return withDb(async (db) => Number((await db.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n));
}

