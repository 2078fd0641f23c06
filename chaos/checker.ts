import type { PrivateRabbitMq } from './private-rabbitmq';
import { log, pause, query } from './util';

/** The Jepsen-style counts of one scenario, all read from the database after quiescence. */
export interface Counts {
  /** Orders in ordering.orders: committed OrderCreated events (each has exactly one outbox row). */
  readonly committed: number;
  /** Acknowledged (HTTP 201) orders missing from ordering.orders. Must be 0. */
  readonly acknowledgedMissing: number;
  /** Committed orders with no payment: OrderCreated never delivered to payments. Must be 0. */
  readonly lostOrderCreated: number;
  /** Paid orders still not `paid` in ordering: OrderPaid never delivered back. Must be 0. */
  readonly lostOrderPaid: number;
  /** Payments (or payment executions) for orders that ordering never committed. Must be 0. */
  readonly phantomPayments: number;
  /** OrderPaid executions in ordering for payments that were never committed. Must be 0. */
  readonly phantomPaid: number;
  /** Extra executions of RecordPaymentHandler beyond one per order (audit log). Must be 0. */
  readonly duplicatePaymentEffects: number;
  /** Extra executions of OrderPaidHandler beyond one per order (audit log). Must be 0. */
  readonly duplicatePaidEffects: number;
  /** Outbox rows not sent at the end, both services (pending or unroutable). */
  readonly outboxLeft: number;
  /** Messages in dead-letter queues at the end. */
  readonly deadLettered: number;
}

const COUNTS_SQL = `
  SELECT
    (SELECT count(*) FROM ordering.orders)::int AS committed,
    (SELECT count(*) FROM unnest($1::uuid[]) AS a(id) WHERE NOT EXISTS (SELECT 1 FROM ordering.orders o WHERE o.id = a.id))::int AS acknowledged_missing,
    (SELECT count(*) FROM ordering.orders o WHERE NOT EXISTS (SELECT 1 FROM payments.payments p WHERE p.order_id = o.id))::int AS lost_order_created,
    (SELECT count(*) FROM ordering.orders o WHERE o.status <> 'paid' AND EXISTS (SELECT 1 FROM payments.payments p WHERE p.order_id = o.id))::int AS lost_order_paid,
    (SELECT count(*) FROM (SELECT order_id FROM payments.payments UNION SELECT order_id FROM payments.payment_attempts_log) x
       WHERE NOT EXISTS (SELECT 1 FROM ordering.orders o WHERE o.id = x.order_id))::int AS phantom_payments,
    (SELECT count(*) FROM (SELECT DISTINCT order_id FROM ordering.order_paid_log) x
       WHERE NOT EXISTS (SELECT 1 FROM payments.payments p WHERE p.order_id = x.order_id))::int AS phantom_paid,
    (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM payments.payment_attempts_log GROUP BY order_id) x)::int AS duplicate_payment_effects,
    (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM ordering.order_paid_log GROUP BY order_id) x)::int AS duplicate_paid_effects,
    ((SELECT count(*) FROM ordering.integration_events_outbox WHERE status IN ('pending', 'unroutable'))
      + (SELECT count(*) FROM payments.integration_events_outbox WHERE status IN ('pending', 'unroutable')))::int AS outbox_left,
    (SELECT count(*) FROM payments.payments)::int AS payments,
    (SELECT count(*) FROM ordering.orders WHERE status = 'paid')::int AS paid,
    (SELECT count(*) FROM payments.payment_attempts_log)::int AS payment_log,
    (SELECT count(*) FROM ordering.order_paid_log)::int AS paid_log`;

interface CountsRow extends Record<string, unknown> {
  committed: number;
  acknowledged_missing: number;
  lost_order_created: number;
  lost_order_paid: number;
  phantom_payments: number;
  phantom_paid: number;
  duplicate_payment_effects: number;
  duplicate_paid_effects: number;
  outbox_left: number;
  payments: number;
  paid: number;
  payment_log: number;
  paid_log: number;
}

export class Checker {
  constructor(
    private readonly databaseUrl: string,
    private readonly rabbitmq: PrivateRabbitMq,
    private readonly vhost: string,
  ) {}

  /**
   * Waits until the system has nothing left to do: every committed order paid, no outbox row waiting,
   * and no message in any queue but the dead-letter queues (ready or unacknowledged, retry wait queues
   * included), seen twice in a row. Gives up when nothing has changed for `stallMs` (longer than the
   * relay's 30 s lease, so rows of a killed relay are given their chance) or at `deadlineMs`; the counts
   * then show what is missing.
   */
  async awaitQuiescence({ deadlineMs, stallMs }: { deadlineMs: number; stallMs: number }): Promise<'quiet' | 'stalled' | 'deadline'> {
    const started = Date.now();
    let fingerprint = '';
    let changedAt = Date.now();
    let quietBefore = false;
    let lastReport = 0;
    for (;;) {
      let quiet = false;
      try {
        const row = await this.read([]);
        const settled = row.lost_order_created === 0 && row.lost_order_paid === 0 && row.outbox_left === 0;
        let queued = -1;
        if (settled) {
          const queues = await this.rabbitmq.queues(this.vhost);
          queued = queues.filter((q) => !q.name.endsWith('.dlq')).reduce((sum, q) => sum + q.ready + q.unacked, 0);
        }
        quiet = settled && queued === 0;
        const next = [row.committed, row.payments, row.paid, row.payment_log, row.paid_log, row.outbox_left, queued].join('/');
        if (next !== fingerprint) {
          fingerprint = next;
          changedAt = Date.now();
        }
        if (Date.now() - lastReport > 5_000) {
          lastReport = Date.now();
          log(
            `  waiting for quiescence: ${row.committed} orders, ${row.payments} payments, ${row.paid} paid, ` +
              `${row.outbox_left} outbox rows unsent${queued >= 0 ? `, ${queued} messages queued` : ''}`,
          );
        }
      } catch (error) {
        // The database may be restarting right now; try again.
        changedAt = Date.now();
        log(`  (quiescence probe failed: ${error instanceof Error ? error.message.split('\n')[0] : String(error)})`);
      }
      if (quiet && quietBefore) return 'quiet';
      quietBefore = quiet;
      if (Date.now() - changedAt >= stallMs) return 'stalled';
      if (Date.now() - started >= deadlineMs) return 'deadline';
      await pause(quiet ? 1_000 : 500);
    }
  }

  async count(acknowledgedIds: readonly string[]): Promise<Counts> {
    const row = await this.read(acknowledgedIds);
    const queues = await this.rabbitmq.queues(this.vhost);
    return {
      committed: row.committed,
      acknowledgedMissing: row.acknowledged_missing,
      lostOrderCreated: row.lost_order_created,
      lostOrderPaid: row.lost_order_paid,
      phantomPayments: row.phantom_payments,
      phantomPaid: row.phantom_paid,
      duplicatePaymentEffects: row.duplicate_payment_effects,
      duplicatePaidEffects: row.duplicate_paid_effects,
      outboxLeft: row.outbox_left,
      deadLettered: queues.filter((q) => q.name.endsWith('.dlq')).reduce((sum, q) => sum + q.ready + q.unacked, 0),
    };
  }

  /** For a report on failure: a few lost orders and what became of their messages. */
  async describeLosses(limit = 5): Promise<string[]> {
    const rows = await query<{ id: string; status: string; payment: string | null; outbox: string | null; inbox: string | null }>(
      this.databaseUrl,
      `SELECT o.id, o.status,
              (SELECT p.id::text FROM payments.payments p WHERE p.order_id = o.id) AS payment,
              (SELECT concat_ws(' ', 'outbox', x.id::text, x.status, 'attempts', x.attempts, x.last_error)
                 FROM ordering.integration_events_outbox x WHERE x.payload LIKE '%' || o.id::text || '%' LIMIT 1) AS outbox,
              (SELECT string_agg(concat_ws(' ', 'inbox', i.handler), ', ') FROM payments.integration_events_inbox i
                 JOIN ordering.integration_events_outbox x ON x.id::text = i.message_id WHERE x.payload LIKE '%' || o.id::text || '%') AS inbox
         FROM ordering.orders o
        WHERE o.status <> 'paid' OR NOT EXISTS (SELECT 1 FROM payments.payments p WHERE p.order_id = o.id)
        ORDER BY o.created_at LIMIT $1`,
      [limit],
    );
    return rows.map((r) => `order ${r.id} ${r.status}; payment ${r.payment ?? 'none'}; ${r.outbox ?? 'no outbox row'}; ${r.inbox ?? 'not in the payments inbox'}`);
  }

  /** Orders with more than one execution of a side effect, for a report on failure. */
  async describeDuplicates(limit = 5): Promise<string[]> {
    const rows = await query<{ source: string; order_id: string; n: number; pids: string }>(
      this.databaseUrl,
      `(SELECT 'payment_attempts_log' AS source, order_id::text, count(*)::int AS n, string_agg(handled_by::text || '@' || recorded_at::text, ', ') AS pids
          FROM payments.payment_attempts_log GROUP BY order_id HAVING count(*) > 1 LIMIT $1)
       UNION ALL
       (SELECT 'order_paid_log', order_id::text, count(*)::int, string_agg(handled_by::text || '@' || recorded_at::text, ', ')
          FROM ordering.order_paid_log GROUP BY order_id HAVING count(*) > 1 LIMIT $1)`,
      [limit],
    );
    return rows.map((r) => `${r.source}: order ${r.order_id} handled ${r.n} times (pid@time: ${r.pids})`);
  }

  private async read(acknowledgedIds: readonly string[]): Promise<CountsRow> {
    const [row] = await query<CountsRow>(this.databaseUrl, COUNTS_SQL, [acknowledgedIds]);
    return row!;
  }
}
