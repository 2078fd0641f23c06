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
import { cpus } from 'node:os';
import { AMOUNT_CENTS, CUSTOMER_ID, timeOrderedUuidSql } from '../lib/contract';
import { CpuMeter } from '../lib/cpu';
import { countRows, createTables } from '../lib/database';
import { check, Namespace, outboxTable } from '../lib/helpers';
import { findPgbench, outboxInsertSql, quote, runPgbenchScript, transactionScript } from '../lib/pgbench';
import { fmtRate, fmtRatio, fmtSpread, metric, ratio, type Runs, type VariantRun, type Workload } from '../lib/report';

const VARIANTS = ['order', 'order-outbox', 'order-outbox-cte'] as const;
type Variant = (typeof VARIANTS)[number];
const LABELS: Record<Variant, string> = {
  order: 'pgbench: the order alone (as C)',
  'order-outbox': 'pgbench: order + outbox INSERT (as publish())',
  'order-outbox-cte': 'pgbench: order + outbox row in one statement',
};

/**
 * The transaction of a variant as a pgbench script. The outbox INSERT is the library's (same columns,
 * the same handoff lease expression, `available_at` defaulting to now()); values are literals. The
 * order's id comes from gen_random_uuid() on the server, the outbox row's is time-ordered, as the
 * library's `newMessageId()` makes it.
 */
function script(variant: Variant, schema: string): string {
  const order = `INSERT INTO "${schema}".orders (id, customer_id, amount_cents) VALUES (gen_random_uuid(), ${quote(CUSTOMER_ID)}, ${AMOUNT_CENTS})`;
  const outbox = outboxInsertSql(schema, timeOrderedUuidSql());
  const body = variant === 'order' ? [order] : variant === 'order-outbox' ? [order, outbox] : [`WITH o AS (${order}) ${outbox}`];
  return transactionScript(body);
}

export const floor: Workload = {
  name: 'floor',
  title: 'Floor D: PostgreSQL alone (pgbench)',
  variants: () => (findPgbench() ? [...VARIANTS] : []),
  async run(variant, context): Promise<VariantRun> {
    const { options, resources } = context;
    const ns = new Namespace(`floor-${variant}`);
    await createTables(resources, ns.schema, { outbox: true, orders: true });
    const backends = context.cpu.postgresPids();
    const cpuBefore = context.cpu.sample({});
    const { transactions, tps, failed } = await runPgbenchScript(script(variant as Variant, ns.schema), options.concurrency, options.floorSeconds);
    // pgbench's backends are still exiting: their CPU counts once they are gone.
    await context.cpu.settlePostgres(backends);
    const cpuAfter = context.cpu.sample({});
    const orders = await countRows(`"${ns.schema}".orders`);
    const outboxRows = await countRows(outboxTable(ns.schema));
    return {
      metrics: {
        commitsPerSec: tps,
        ...CpuMeter.perEvent(cpuBefore, cpuAfter, transactions, cpus().length),
      },
      checks: [
        check(`Floor D ${variant}: failed transactions`, 0, failed),
        check(`Floor D ${variant}: order rows = committed transactions`, transactions, orders),
        check(`Floor D ${variant}: outbox rows`, variant === 'order' ? 0 : transactions, outboxRows),
      ],
    };
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
