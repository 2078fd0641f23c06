/**
 * Message ids — what the id's shape costs PostgreSQL on tables that have grown, with no Node.js client
 * at all. The outbox's primary key is the message id, and so is the second column of the inbox's
 * (handler, message_id). With random (version 4) ids every new row goes to a random page of those
 * B-trees; with time-ordered ids (version 7, the library's `newMessageId()`) to the last one. The first
 * change to a page after a checkpoint writes the whole 8 kB page to the WAL, and on a grown table random
 * ids change a different page nearly every time.
 *
 * Each run fills a table made by the library's migration with `--ids-rows` rows of the variant's kind
 * of id, as a service's table holds them after a while (the inbox keeps rows 7 days by default, the
 * outbox its sent rows 1 day: their times are spread over that), checkpoints, then runs the transaction
 * that adds one row — the consumer's inbox record, or `publish()`'s outbox INSERT — with pgbench for
 * `--ids-seconds` at the steady load's concurrency. It reports commits/s and WAL bytes per transaction.
 *
 * Needs pgbench, as Floor D; without one the workload says so and is skipped. Not in the default run
 * (each run fills its table first): `--only ids`, or `--all`.
 */
import { cpus } from 'node:os';
import { EVENT_NAME, eventBody, timeOrderedUuidSql } from '../lib/contract';
import { CpuMeter } from '../lib/cpu';
import { countRows, createTables } from '../lib/database';
import { check, inboxTable, Namespace, outboxTable, withDb } from '../lib/helpers';
import { findPgbench, outboxInsertSql, quote, runPgbenchScript, transactionScript } from '../lib/pgbench';
import { fmtNumber, fmtRate, fmtRatio, fmtSpread, metric, ratio, type Runs, type VariantRun, type Workload } from '../lib/report';

const VARIANTS = ['inbox-random', 'inbox-time-ordered', 'outbox-random', 'outbox-time-ordered'] as const;
type Variant = (typeof VARIANTS)[number];
type Table = 'inbox' | 'outbox';
type IdKind = 'random' | 'time-ordered';

const tableOf = (variant: Variant): Table => (variant.startsWith('inbox') ? 'inbox' : 'outbox');
const kindOf = (variant: Variant): IdKind => (variant.endsWith('random') ? 'random' : 'time-ordered');

const LABELS: Record<Variant, string> = {
  'inbox-random': 'inbox record, random ids (version 4)',
  'inbox-time-ordered': 'inbox record, time-ordered ids (version 7, the library)',
  'outbox-random': 'outbox INSERT, random ids (version 4)',
  'outbox-time-ordered': 'outbox INSERT, time-ordered ids (version 7, the library)',
};

/** How long the rows of a filled table span: the default retention of each table. */
const RETENTION_MS: Record<Table, number> = { inbox: 7 * 86_400_000, outbox: 86_400_000 };

const HANDLER = 'bench-ids.handler';

/**
 * A past id of the kind, for row `g` of `rows` filled: a time-ordered one carries a time spread over
 * the table's retention, oldest first.
 */
function pastIdSql(kind: IdKind, table: Table, rows: number): string {
  if (kind === 'random') return 'gen_random_uuid()';
  return timeOrderedUuidSql(`(extract(epoch FROM now()) * 1000)::bigint - ${RETENTION_MS[table]} + g::bigint * ${RETENTION_MS[table]} / ${rows}`);
}

/**
 * Fills the table with `rows` rows, its primary key dropped meanwhile and made again after (one sort
 * instead of a row at a time: minutes less for millions of rows), then VACUUM ANALYZE and CHECKPOINT.
 */
async function fill(schema: string, table: Table, kind: IdKind, rows: number): Promise<void> {
  await withDb(async (db) => {
    const qualified = table === 'inbox' ? inboxTable(schema) : outboxTable(schema);
    const { rows: keys } = await db.query<{ name: string; definition: string }>(
      "SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'",
      [qualified],
    );
    const key = keys[0];
    if (!key) throw new Error(`${qualified} has no primary key`);
    await db.query(`ALTER TABLE ${qualified} DROP CONSTRAINT "${key.name}"`);
    const id = pastIdSql(kind, table, rows);
    const at = `now() - interval '${RETENTION_MS[table]} milliseconds' + g * interval '${RETENTION_MS[table] / rows} milliseconds'`;
    if (table === 'inbox') {
      await db.query(`INSERT INTO ${qualified} (handler, message_id, handled_at) SELECT $1::text, ${id}::text, ${at} FROM generate_series(1, $2::int) AS g`, [
        HANDLER,
        rows,
      ]);
    } else {
      // Sent rows, as the outbox holds them until retention deletes them.
      await db.query(
        `INSERT INTO ${qualified} (id, event_name, event_version, payload, headers, occurred_at, created_at, available_at, status, sent_at) ` +
          `SELECT ${id}, $1::text, 1, $2::text, jsonb_build_object('ie-event-name', $1::text), ${at}, ${at}, ${at}, 'sent', ${at} FROM generate_series(1, $3::int) AS g`,
        [EVENT_NAME, eventBody(1), rows],
      );
    }
    await db.query(`ALTER TABLE ${qualified} ADD CONSTRAINT "${key.name}" ${key.definition}`);
    await db.query(`VACUUM ANALYZE ${qualified}`);
    await db.query('CHECKPOINT');
  });
}

/** The transaction that adds one row with a new id of the kind, as the library sends it. */
function script(table: Table, kind: IdKind, schema: string): string {
  const id = kind === 'random' ? 'gen_random_uuid()' : timeOrderedUuidSql();
  if (table === 'inbox') {
    return transactionScript([
      `INSERT INTO ${inboxTable(schema)} (handler, message_id) VALUES (${quote(HANDLER)}, ${id}::text) ON CONFLICT DO NOTHING RETURNING 1 AS recorded`,
    ]);
  }
  return transactionScript([outboxInsertSql(schema, id)]);
}

async function walPosition(): Promise<string> {
  return withDb(async (db) => (await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn);
}

async function walBytesBetween(from: string, to: string): Promise<number> {
  return withDb(async (db) => Number((await db.query<{ bytes: string }>('SELECT pg_wal_lsn_diff($2, $1)::text AS bytes', [from, to])).rows[0]!.bytes));
}

export const ids: Workload = {
  name: 'ids',
  title: 'Message ids on a grown table (pgbench)',
  variants: () => (findPgbench() ? [...VARIANTS] : []),
  async run(variant, context): Promise<VariantRun> {
    const { options, resources } = context;
    const table = tableOf(variant as Variant);
    const kind = kindOf(variant as Variant);
    const ns = new Namespace(`ids-${variant}`);
    await createTables(resources, ns.schema, { [table]: true });
    await fill(ns.schema, table, kind, options.idsRows);
    const walBefore = await walPosition();
    const backends = context.cpu.postgresPids();
    const cpuBefore = context.cpu.sample({});
    const { transactions, tps, failed } = await runPgbenchScript(script(table, kind, ns.schema), options.concurrency, options.idsSeconds);
    // pgbench's backends are still exiting: their CPU counts once they are gone.
    await context.cpu.settlePostgres(backends);
    const cpuAfter = context.cpu.sample({});
    const walBytes = await walBytesBetween(walBefore, await walPosition());
    const rows = await countRows(table === 'inbox' ? inboxTable(ns.schema) : outboxTable(ns.schema));
    // The filled table is hundreds of MB at the default size: dropped now, not at the end of the run.
    await withDb((db) => db.query(`DROP SCHEMA "${ns.schema}" CASCADE`));
    return {
      metrics: {
        commitsPerSec: tps,
        walBytesPerTx: walBytes / transactions,
        ...CpuMeter.perEvent(cpuBefore, cpuAfter, transactions, cpus().length),
      },
      checks: [
        check(`ids ${variant}: failed transactions`, 0, failed),
        check(`ids ${variant}: rows = filled + committed transactions`, options.idsRows + transactions, rows),
      ],
    };
  },
  summarize(runs: Runs, options) {
    const title = `Message ids on a grown table (pgbench, ${fmtNumber(options.idsRows)} rows, concurrency ${options.concurrency}, ${options.idsSeconds} s)`;
    if (!runs['inbox-random']) return { rows: [{ workload: title, variant: 'skipped: pgbench not found (set PGBENCH)' }], targets: [] };
    const rows = VARIANTS.map((variant) => {
      const rate = metric(runs[variant], 'commitsPerSec');
      const wal = metric(runs[variant], 'walBytesPerTx');
      const random = `${tableOf(variant)}-random`;
      return {
        workload: title,
        variant: `${LABELS[variant]}: WAL ${fmtNumber(wal.median)} B per transaction (${fmtNumber(wal.min)}–${fmtNumber(wal.max)})`,
        throughput: fmtRate(rate, 'commits/s'),
        spread: fmtSpread(rate),
        ratio: kindOf(variant) === 'random' ? '1.00× random' : fmtRatio(ratio(runs[variant], runs[random], 'commitsPerSec'), 'random'),
      };
    });
    return { rows, targets: [] };
  },
};
