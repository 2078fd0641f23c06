/**
 * Floor D — PostgreSQL alone: what the outbox row costs PostgreSQL, with no Node.js client at all.
 * pgbench (PostgreSQL's own C client, prepared statements, the steady load's concurrency) runs the
 * steady load's transaction three ways on tables made by the library's migration: the order alone (as
 * Baseline C), the order plus the library's outbox INSERT as a statement of its own (what `publish()`
 * does), and both rows in one statement (a CTE: the outbox row without its own round trip). The CPU
 * PostgreSQL spends on the outbox row here bounds the steady-load ratio any client can reach (see the
 * steady load's target line).
 *
 * Needs pgbench (PGBENCH, else `pgbench` on the PATH, else the newest /usr/lib/postgresql/<version>/bin/
 * pgbench); without one the workload says so and is skipped. A PGBENCH that does not run fails it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AMOUNT_CENTS, CUSTOMER_ID, EVENT_NAME, eventBody } from '../lib/contract';
import { CpuMeter } from '../lib/cpu';
import { countRows, createTables } from '../lib/database';
import { check, DATABASE_URL, Namespace, outboxTable } from '../lib/helpers';
import { trackProgram } from '../lib/processes';
import { fmtRate, fmtRatio, fmtSpread, metric, ratio, type Runs, type VariantRun, type Workload } from '../lib/report';

const VARIANTS = ['order', 'order-outbox', 'order-outbox-cte'] as const;
type Variant = (typeof VARIANTS)[number];
const LABELS: Record<Variant, string> = {
  order: 'pgbench: the order alone (as C)',
  'order-outbox': 'pgbench: order + outbox INSERT (as publish())',
  'order-outbox-cte': 'pgbench: order + outbox row in one statement',
};

/** pgbench's path, or undefined when this machine has none (looked up once). */
let pgbenchPath: { path: string | undefined } | undefined;
function findPgbench(): string | undefined {
  pgbenchPath ??= { path: lookUpPgbench() };
  return pgbenchPath.path;
}

function lookUpPgbench(): string | undefined {
  if (process.env.PGBENCH) return process.env.PGBENCH;
  if (spawnSync('pgbench', ['--version'], { stdio: 'ignore' }).status === 0) return 'pgbench';
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, 'bin', 'pgbench')).find((path) => existsSync(path));
}

const quote = (text: string) => `'${text.replace(/'/g, "''")}'`;

/**
 * The transaction of a variant as a pgbench script. The outbox INSERT is the library's (same columns,
 * the same handoff lease expression, `available_at` defaulting to now()); values are literals and the
 * ids come from gen_random_uuid() on the server, for the order as for the outbox row.
 */
function script(variant: Variant, schema: string): string {
  const order = `INSERT INTO "${schema}".orders (id, customer_id, amount_cents) VALUES (gen_random_uuid(), ${quote(CUSTOMER_ID)}, ${AMOUNT_CENTS})`;
  const headers = JSON.stringify({
    'ie-event-name': EVENT_NAME,
    'ie-event-version': 1,
    'ie-occurred-at': new Date().toISOString(),
    'ie-source-service': 'bench',
    'ie-correlation-id': '6f9619ff-8b86-4011-b42d-00c04fc964ff',
  });
  const outbox =
    `INSERT INTO ${outboxTable(schema)} (id, event_name, event_version, payload, headers, occurred_at, available_at, locked_until, lease_token) ` +
    `VALUES (gen_random_uuid(), ${quote(EVENT_NAME)}, 1, ${quote(eventBody(12_345))}, ${quote(headers)}, now(), COALESCE(NULL::timestamptz, now()), ` +
    "clock_timestamp() + 30000 * interval '1 millisecond', '0b6c3f8e-2f4c-4e0a-9d1e-7a5b2c8d9e10'::uuid)";
  const body = variant === 'order' ? [order] : variant === 'order-outbox' ? [order, outbox] : [`WITH o AS (${order}) ${outbox}`];
  const text = ['BEGIN;', ...body.map((statement) => `${statement};`), 'COMMIT;', ''].join('\n');
  // pgbench substitutes `:name` anywhere, quoted literals included (`::type` casts aside): none may be in the text.
  const variable = /(?<!:):[A-Za-z_]/.exec(text);
  if (variable) throw new Error(`the pgbench script would substitute a variable at "${text.slice(variable.index, variable.index + 20)}"`);
  return text;
}

/** Runs pgbench; resolves with its output, rejects with it when it fails. */
function pgbench(path: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    trackProgram(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(output) : reject(new Error(`pgbench exited with ${code}:\n${output}`))));
  });
}

const number = (output: string, pattern: RegExp): number => Number(pattern.exec(output)?.[1] ?? NaN);

export const floor: Workload = {
  name: 'floor',
  title: 'Floor D: PostgreSQL alone (pgbench)',
  variants: () => (findPgbench() ? [...VARIANTS] : []),
  async run(variant, context): Promise<VariantRun> {
    const { options, resources } = context;
    const path = findPgbench()!;
    const ns = new Namespace(`floor-${variant}`);
    await createTables(resources, ns.schema, { outbox: true, orders: true });
    const dir = mkdtempSync(join(tmpdir(), 'bench-floor-'));
    try {
      const file = join(dir, `${variant}.sql`);
      writeFileSync(file, script(variant as Variant, ns.schema));
      const threads = Math.min(cpus().length, options.concurrency);
      const args = ['-n', '-M', 'prepared', '-c', String(options.concurrency), '-j', String(threads), '-T', String(options.floorSeconds), '-f', file, DATABASE_URL];
      const cpuBefore = context.cpu.sample({});
      const output = await pgbench(path, args);
      const transactions = number(output, /number of transactions actually processed: (\d+)/);
      // "(without initial connection time)" since PostgreSQL 14, "(excluding connections establishing)" before.
      const tps = number(output, /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/);
      if (!Number.isFinite(transactions) || !Number.isFinite(tps)) throw new Error(`could not read pgbench's output:\n${output}`);
      const cpuAfter = context.cpu.sample({});
      const orders = await countRows(`"${ns.schema}".orders`);
      const outboxRows = await countRows(outboxTable(ns.schema));
      return {
        metrics: {
          commitsPerSec: tps,
          ...CpuMeter.perEvent(cpuBefore, cpuAfter, transactions, cpus().length),
        },
        checks: [
          // Printed since PostgreSQL 15; before, a failed transaction aborts its client and pgbench exits non-zero.
          check(`Floor D ${variant}: failed transactions`, 0, number(output, /number of failed transactions: (\d+)/) || 0),
          check(`Floor D ${variant}: order rows = committed transactions`, transactions, orders),
          check(`Floor D ${variant}: outbox rows`, variant === 'order' ? 0 : transactions, outboxRows),
        ],
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  summarize(runs: Runs, options) {
    const title = `Floor D: PostgreSQL alone (pgbench, concurrency ${options.concurrency}, ${options.floorSeconds} s)`;
    if (!runs.order) return { rows: [{ workload: title, variant: 'skipped: pgbench not found (set PGBENCH)' }], targets: [] };
    const rows = VARIANTS.map((variant) => {
      const rate = metric(runs[variant], 'commitsPerSec');
      return {
        workload: title,
        variant: LABELS[variant],
        throughput: fmtRate(rate, 'commits/s'),
        spread: fmtSpread(rate),
        ratio: variant === 'order' ? '1.00× order' : fmtRatio(ratio(runs[variant], runs.order, 'commitsPerSec'), 'order'),
      };
    });
    return { rows, targets: [] };
  },
};
