import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { Injectable } from '@nestjs/common';
import { CqrsModule, EventBus, EventsHandler, type IEventHandler } from '@nestjs/cqrs';
import type { TestingModule } from '@nestjs/testing';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { DataSource, type EntitySubscriberInterface, type TransactionCommitEvent } from 'typeorm';
import {
  CleanupWorker,
  InboxTableMissingError,
  TableShapeMismatchError,
  IntegrationEvent,
  IntegrationEventHandler,
  IntegrationEventsModule,
  IntegrationEventPublisher,
  TransactionsNotConfiguredError,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { registerTestMeterProvider } from './support/test-meters';

/** Queue names fixed in the decorators, unique to this run of the file (another run on the same broker, say a developer's beside CI's, must not share them). */
const RUN = randomUUID().slice(0, 8);
import { TEST_DATABASE_URL } from './support/services';
import { AbandonedCalls } from '../libs/integration-events/src/consumer/abandoned-calls';
import { CapturingLogger } from './support/capturing-logger';
import { bootRefused, infrastructureImports, startTestApp, testOptions, trackHandlerQueues, transactionsOnAnotherDataSource } from './support/test-app';
import { TestNamespace } from './support/test-namespace';
import { untilAborted } from './support/until-aborted';

@IntegrationEvent({ name: 'payments.payment-taken', version: 1 })
class PaymentTakenIntegrationEvent {
  constructor(readonly orderId: string) {}
}

@Injectable()
class Ledger {
  table = '';
  failFirstAttempt = false;
  calls = 0;
  /** The order id of every call, in call order. */
  readonly orderIds: string[] = [];
}

/** Takes a payment: a database write and an integration event, once per order, whatever the deliveries. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class TakePayment implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(
    private readonly ledger: Ledger,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly publisher: IntegrationEventPublisher,
  ) {}

  async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.ledger.calls++;
    this.ledger.orderIds.push(event.orderId);
    await this.txHost.tx.query(`INSERT INTO ${this.ledger.table} (order_id, message_id) VALUES ($1, $2)`, [event.orderId, context.messageId]);
    await this.publisher.publish(new PaymentTakenIntegrationEvent(event.orderId));
    if (this.ledger.failFirstAttempt && context.attempt === 1) throw new Error('card network timeout after writing');
  }
}

@IntegrationEvent({ name: 'inbox.slow-write', version: 1 })
class SlowWriteIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/** Writes, then on its first attempt outlasts its 300 ms timeout: it returns normally once abandoned (its signal fired). */
@IntegrationEventHandler(SlowWriteIntegrationEvent, { timeoutMs: 300 })
class SlowWrite implements IIntegrationEventHandler<SlowWriteIntegrationEvent> {
  readonly attempts: Array<{ attempt: number; finishedAt?: number }> = [];
  constructor(
    private readonly ledger: Ledger,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}

  async handle(event: SlowWriteIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    const call: { attempt: number; finishedAt?: number } = { attempt: context.attempt };
    this.attempts.push(call);
    await this.txHost.tx.query(`INSERT INTO ${this.ledger.table} (order_id, message_id) VALUES ($1, $2)`, [event.orderId, `attempt-${context.attempt}`]);
    if (context.attempt === 1) {
      const { signal } = context;
      await untilAborted(signal);
    }
    call.finishedAt = Date.now();
  }
}

@IntegrationEvent({ name: 'inbox.swallowed-failure', version: 1 })
class SwallowedFailureIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/** Writes, then on its first attempt runs a statement that fails and swallows the error: the transaction is aborted. */
@IntegrationEventHandler(SwallowedFailureIntegrationEvent)
class SwallowsFailure implements IIntegrationEventHandler<SwallowedFailureIntegrationEvent> {
  readonly attempts: number[] = [];
  constructor(
    private readonly ledger: Ledger,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}

  async handle(event: SwallowedFailureIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.attempts.push(context.attempt);
    await this.txHost.tx.query(`INSERT INTO ${this.ledger.table} (order_id, message_id) VALUES ($1, $2)`, [event.orderId, `attempt-${context.attempt}`]);
    if (context.attempt === 1) await this.txHost.tx.query('SELECT 1 / 0').catch(() => undefined);
  }
}

@IntegrationEvent({ name: 'inbox.long-hold', version: 1 })
class LongHoldIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/**
 * Attempt 1 holds its inbox record (and so the row lock) for 1.2 s, far past its 300 ms timeout; the
 * retries meanwhile wait for it (in this process: see AbandonedCalls), and time out too. Notes whether
 * each call began already given up.
 */
@IntegrationEventHandler(LongHoldIntegrationEvent, { timeoutMs: 300 })
class LongHold implements IIntegrationEventHandler<LongHoldIntegrationEvent> {
  readonly calls: Array<{ messageId: string; attempt: number; abandonedAtStart: boolean }> = [];
  constructor(
    private readonly ledger: Ledger,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}

  /** The calls for one message, without the message id. */
  callsFor(messageId: string): Array<{ attempt: number; abandonedAtStart: boolean }> {
    return this.calls.filter((call) => call.messageId === messageId).map(({ attempt, abandonedAtStart }) => ({ attempt, abandonedAtStart }));
  }

  async handle(event: LongHoldIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.calls.push({ messageId: context.messageId, attempt: context.attempt, abandonedAtStart: context.signal.aborted });
    await this.txHost.tx.query(`INSERT INTO ${this.ledger.table} (order_id, message_id) VALUES ($1, $2)`, [event.orderId, `attempt-${context.attempt}`]);
    if (context.attempt === 1) await new Promise((resolve) => setTimeout(resolve, 1_200));
  }
}

@IntegrationEvent({ name: 'inbox.slow-commit', version: 1 })
class SlowCommitIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/**
 * Writes a row whose deferred trigger makes the COMMIT take 1.5 s, past the 1 s timeout: the handler
 * itself is done in a few milliseconds. One attempt only, so a timeout would dead-letter the message.
 */
@IntegrationEventHandler(SlowCommitIntegrationEvent, { timeoutMs: 1_000, retry: { maxAttempts: 1 } })
class SlowCommit implements IIntegrationEventHandler<SlowCommitIntegrationEvent> {
  constructor(
    private readonly ledger: Ledger,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}

  async handle(event: SlowCommitIntegrationEvent): Promise<void> {
    await this.txHost.tx.query(`INSERT INTO ${this.ledger.table.replace(/ledger$/, 'slow_commit')} (order_id) VALUES ($1)`, [event.orderId]);
  }
}

/** Touches no database: opts out of the inbox and sees every delivery. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { inbox: false })
class CountDeliveries implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly ids: string[] = [];
  handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): void {
    this.ids.push(context.messageId);
  }
}

/** A namespace with the ledger table the handlers above write to. */
async function ledgerNamespace(): Promise<TestNamespace> {
  const ns = await TestNamespace.create();
  const db = await ns.sql();
  await db.query(`CREATE TABLE "${ns.schema}".ledger (order_id text NOT NULL, message_id text NOT NULL)`);
  // A row here makes its transaction's COMMIT take 1.5 s (a deferred trigger runs at the commit).
  await db.query(`CREATE TABLE "${ns.schema}".slow_commit (order_id text NOT NULL)`);
  await db.query(
    `CREATE FUNCTION "${ns.schema}".sleep_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$`,
  );
  await db.query(
    `CREATE CONSTRAINT TRIGGER sleep_at_commit AFTER INSERT ON "${ns.schema}".slow_commit DEFERRABLE INITIALLY DEFERRED ` +
      `FOR EACH ROW EXECUTE FUNCTION "${ns.schema}".sleep_at_commit()`,
  );
  return ns;
}

/**
 * Publishes an `inbox.slow-commit` event for `handler`, whose COMMIT outlasts its timeout, and checks it
 * was handled once: its row committed, and the message neither dead-lettered nor left in its queue.
 */
async function expectHandledDespiteSlowCommit(ns: TestNamespace, handler: string, orderId: string): Promise<void> {
  await ns.publishRaw('inbox.slow-commit', JSON.stringify({ orderId }), { messageId: `m-${orderId}` });
  const committed = async () => (await (await ns.sql()).query(`SELECT 1 FROM "${ns.schema}".slow_commit WHERE order_id = $1`, [orderId])).rows;
  await eventually(async () => expect(await committed()).toHaveLength(1), { timeoutMs: 10_000 });
  await consistently(
    async () => {
      expect(await ns.queueDepth(`${ns.serviceName}.${handler}.dlq`)).toBe(0);
      expect(await ns.queueDepth(`${ns.serviceName}.${handler}`)).toBe(0);
    },
    { forMs: 1_500 },
  );
}

/** Idempotent consumption: the inbox, and the cleanup of old rows. */
describe('inbox', () => {
  let ns: TestNamespace;
  let app: TestingModule;
  let ledger: Ledger;
  const logs = new CapturingLogger();

  beforeAll(async () => {
    ns = await ledgerNamespace();
    app = await startTestApp(ns, {
      logger: logs,
      providers: [Ledger, TakePayment, CountDeliveries, SlowWrite, SwallowsFailure, LongHold, SlowCommit],
      options: {
        consumer: { retry: { initialDelayMs: 20, maxDelayMs: 40 } },
        outbox: { retentionMs: 60_000 },
        // The least the handlers here allow: twice the default 60 s timeout, then twice the 30 s lease.
        inbox: { retentionMs: 180_000 },
        cleanup: { batchSize: 7 },
      },
    });
    ledger = app.get(Ledger);
    ledger.table = `"${ns.schema}".ledger`;
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  const body = (orderId: string) => JSON.stringify({ orderId, placedAt: '2026-11-26T06:00:00.000Z' });
  const ledgerRows = async (orderId: string) =>
    (await (await ns.sql()).query(`SELECT message_id FROM "${ns.schema}".ledger WHERE order_id = $1`, [orderId])).rows;
  const paymentEvents = async (orderId: string) =>
    (await (await ns.sql()).query(`SELECT id FROM ${ns.outboxTable} WHERE event_name = 'payments.payment-taken' AND payload::jsonb->>'orderId' = $1`, [orderId])).rows;

  it('acknowledges a duplicate delivery without running the handler again', async () => {
    // A meter provider for this test alone: the library counts through whichever is registered now.
    const meters = registerTestMeterProvider();
    /** TakePayment's `integration_events.handled` counts, since the provider was registered. */
    const handled = () => meters.counts('integration_events.handled', 'TakePayment');
    try {
      for (let i = 0; i < 3; i++) await ns.publishRaw('ordering.order-created', body('dup'), { messageId: 'm-dup' });
      // The opted-out handler sees all three: proof that three deliveries happened.
      await eventually(() => expect(app.get(CountDeliveries).ids.filter((id) => id === 'm-dup')).toHaveLength(3));
      // The first delivery's call may still be committing; then the row stays alone.
      await eventually(async () => expect(await ledgerRows('dup')).toHaveLength(1));
      // One call, acknowledged; the two others acknowledged as duplicates, without a call.
      const oneCallTwoDuplicates = [
        ['ordering.order-created', 'ack', 1],
        ['ordering.order-created', 'duplicate', 2],
      ];
      await eventually(async () => expect(await handled()).toEqual(oneCallTwoDuplicates));
      // Nothing retried or dead-lettered later (the retry delays here are 20-40 ms, ten attempts).
      await consistently(
        async () => {
          expect(ledger.orderIds.filter((orderId) => orderId === 'dup')).toHaveLength(1);
          expect(await ledgerRows('dup')).toHaveLength(1);
          expect(await ns.queueDepth(`${ns.serviceName}.TakePayment.dlq`)).toBe(0);
          expect(await handled()).toEqual(oneCallTwoDuplicates);
        },
        { forMs: 1_000 },
      );
      expect(await paymentEvents('dup')).toHaveLength(1);
      const { rows } = await (await ns.sql()).query(`SELECT handler, message_id FROM ${ns.inboxTable} WHERE message_id = 'm-dup'`);
      expect(rows).toEqual([{ handler: `${ns.serviceName}.TakePayment`, message_id: 'm-dup' }]);
      expect(await ns.queueDepth(`${ns.serviceName}.TakePayment`)).toBe(0);
    } finally {
      await meters.stop();
    }
  });

  it('commits the handler\'s writes and published events with the inbox record, or none of them', async () => {
    ledger.failFirstAttempt = true;
    try {
      const callsBefore = ledger.calls;
      await ns.publishRaw('ordering.order-created', body('atomic'), { messageId: 'm-atomic' });
      // The inbox record commits with attempt 2 only: once it is there, both attempts are over.
      await eventually(async () =>
        expect((await (await ns.sql()).query(`SELECT 1 FROM ${ns.inboxTable} WHERE message_id = 'm-atomic'`)).rows).toHaveLength(1),
      );
      expect(ledger.calls - callsBefore).toBe(2);
      // Attempt 1 wrote a row and an event, then failed: both rolled back with its inbox record, and
      // attempt 2's are the only ones.
      expect(await ledgerRows('atomic')).toHaveLength(1);
      expect(await paymentEvents('atomic')).toHaveLength(1);
    } finally {
      ledger.failFirstAttempt = false;
    }
  });

  it('rolls back an attempt abandoned on its timeout, even when the handler finishes later', async () => {
    const slow = app.get(SlowWrite);
    await ns.publishRaw('inbox.slow-write', body('slow'), { messageId: 'm-slow' });
    // Attempt 1 is cut at 300 ms and retried; it still finishes (just after) and tries to commit its write.
    // (Attempt 2 waits for attempt 1 to end, so it may time out as well: any later attempt wins.)
    const finished = () => slow.attempts.filter((a) => a.finishedAt !== undefined).map((a) => a.attempt);
    await eventually(
      async () => {
        expect(finished()).toContain(1);
        expect(await ledgerRows('slow')).toHaveLength(1);
      },
      { timeoutMs: 10_000 },
    );
    await consistently(
      async () => {
        const rows = await ledgerRows('slow');
        expect(rows).toHaveLength(1);
        expect(rows[0].message_id).not.toBe('attempt-1');
      },
      { forMs: 500 },
    );
    const { rows } = await (await ns.sql()).query(`SELECT handler FROM ${ns.inboxTable} WHERE message_id = 'm-slow'`);
    expect(rows).toEqual([{ handler: `${ns.serviceName}.SlowWrite` }]);
  });

  it('acknowledges an attempt whose timeout passes while its COMMIT is on its way, instead of dead-lettering what committed', async () => {
    await expectHandledDespiteSlowCommit(ns, 'SlowCommit', 'slow-commit');
    const { rows } = await (await ns.sql()).query(`SELECT handler FROM ${ns.inboxTable} WHERE message_id = 'm-slow-commit'`);
    expect(rows).toEqual([{ handler: `${ns.serviceName}.SlowCommit` }]);
  });

  it('never calls the handler for an attempt given up while it waited for an earlier attempt of its message', async () => {
    const handler = app.get(LongHold);
    await ns.publishRaw('inbox.long-hold', body('held'), { messageId: 'm-held' });
    await eventually(async () => expect(await ledgerRows('held')).toHaveLength(1), { timeoutMs: 10_000 });
    await consistently(async () => expect(await ledgerRows('held')).toHaveLength(1), { forMs: 300 });
    // Attempt 1 ran and was given up; retries timed out waiting for it. Once it rolled back, the
    // retries that had been given up must not run the handler (their effects elsewhere would happen).
    expect(handler.callsFor('m-held')[0]).toEqual({ attempt: 1, abandonedAtStart: false });
    expect(handler.callsFor('m-held').filter((call) => call.abandonedAtStart)).toEqual([]);
    expect((await ledgerRows('held')).map((r: { message_id: string }) => r.message_id)).not.toContain('attempt-1');
  });

  it('keeps the retries of a call given up on its timeout from waiting on its inbox record\'s lock (each with a pool connection), and logs how it ended', async () => {
    const handler = app.get(LongHold);
    await ns.publishRaw('inbox.long-hold', body('held-off-pool'), { messageId: 'm-held-off-pool' });
    await eventually(() => expect(handler.callsFor('m-held-off-pool').map((call) => call.attempt)).toEqual([1]));
    // While attempt 1 holds its inbox record (1.2 s), no connection of the service waits on that record's
    // lock: its retries, given up on their own timeouts meanwhile, wait in the process.
    const waitingOnTheRecord = async (): Promise<number> =>
      (
        await (await ns.sql()).query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0 AND pid <> pg_backend_pid()`,
          [ns.inboxTable],
        )
      ).rows[0].n;
    const samples: number[] = [];
    await eventually(
      async () => {
        samples.push(await waitingOnTheRecord());
        expect(await ledgerRows('held-off-pool')).toHaveLength(1);
      },
      { timeoutMs: 10_000 },
    );
    expect(samples.length).toBeGreaterThan(5);
    expect(Math.max(...samples)).toBe(0);
    expect(handler.callsFor('m-held-off-pool').filter((call) => call.abandonedAtStart)).toEqual([]);
    await eventually(() =>
      expect(logs.text).toMatch(
        /warn Handler LongHold's call for message m-held-off-pool, given up after its timeout of 300 ms, ended \d+ ms later: its transaction rolled back \(HandlerTimeoutError: /,
      ),
    );
  });

  it('never calls the handler for an attempt given up while its record waited on the lock of another instance\'s', async () => {
    const handler = app.get(LongHold);
    // Another instance's transaction holds the message's inbox record (its handler runs long).
    const holder = new Client({ connectionString: TEST_DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`INSERT INTO ${ns.inboxTable} (handler, message_id) VALUES ($1, $2)`, [`${ns.serviceName}.LongHold`, 'm-held-elsewhere']);
      await ns.publishRaw('inbox.long-hold', body('held-elsewhere'), { messageId: 'm-held-elsewhere' });
      // Attempt 1 waits on that record past its 300 ms timeout, and is given up.
      await eventually(() => expect(logs.text).toContain("Handler LongHold failed message m-held-elsewhere (attempt 1 of"));
      expect(handler.callsFor('m-held-elsewhere')).toEqual([]);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    // Its record goes through once the other instance rolls back: attempt 1 must not call the handler then.
    await eventually(async () => expect(await ledgerRows('held-elsewhere')).toHaveLength(1), { timeoutMs: 10_000 });
    await consistently(async () => expect(await ledgerRows('held-elsewhere')).toHaveLength(1), { forMs: 300 });
    expect(handler.callsFor('m-held-elsewhere').filter((call) => call.abandonedAtStart)).toEqual([]);
    expect(handler.callsFor('m-held-elsewhere').map((call) => call.attempt)).not.toContain(1);
  });

  it('fails an attempt whose handler left its transaction aborted, instead of acknowledging what a COMMIT would roll back', async () => {
    const handler = app.get(SwallowsFailure);
    await ns.publishRaw('inbox.swallowed-failure', body('swallowed'), { messageId: 'm-swallowed' });
    // Attempt 1 wrote, then caught a failed statement and returned: PostgreSQL had aborted its
    // transaction, and its COMMIT would have rolled back the write and the inbox record silently.
    await eventually(async () => expect((await ledgerRows('swallowed')).map((r: { message_id: string }) => r.message_id)).toEqual(['attempt-2']));
    expect(handler.attempts).toEqual([1, 2]);
    const { rows } = await (await ns.sql()).query(`SELECT handler FROM ${ns.inboxTable} WHERE message_id = 'm-swallowed'`);
    expect(rows).toEqual([{ handler: `${ns.serviceName}.SwallowsFailure` }]);
    expect(await ns.queueDepth(`${ns.serviceName}.SwallowsFailure`)).toBe(0);
  });

  it("fails an attempt whose COMMIT PostgreSQL answered with ROLLBACK (an application's commit hook caught a failed statement), instead of acknowledging it", async () => {
    // An "audit must never break business" hook: it fails a statement in the first attempt's transaction,
    // after the inbox's last check, and swallows the error. TypeORM reports the COMMIT as done.
    let armed = true;
    const swallowing: EntitySubscriberInterface = {
      async beforeTransactionCommit(event: TransactionCommitEvent) {
        if (!armed) return;
        const mine = (await event.queryRunner.query(`SELECT 1 FROM ${ledger.table} WHERE order_id = 'hooked'`)) as unknown[];
        if (mine.length === 0) return;
        armed = false;
        await event.queryRunner.query('SELECT 1 / 0').catch(() => undefined);
      },
    };
    const dataSource = app.get(DataSource);
    const callsBefore = ledger.calls;
    dataSource.subscribers.push(swallowing);
    try {
      await ns.publishRaw('ordering.order-created', body('hooked'), { messageId: 'm-hooked' });
      // Attempt 1 rolled back at its COMMIT and failed; attempt 2 committed: the payment is taken once.
      await eventually(async () => expect(await ledgerRows('hooked')).toHaveLength(1));
    } finally {
      dataSource.subscribers.splice(dataSource.subscribers.indexOf(swallowing), 1);
    }
    expect(armed).toBe(false);
    expect(ledger.calls - callsBefore).toBe(2);
    await consistently(async () => expect(await ledgerRows('hooked')).toHaveLength(1), { forMs: 300 });
    expect(await paymentEvents('hooked')).toHaveLength(1);
    expect(await ns.queueDepth(`${ns.serviceName}.TakePayment.dlq`)).toBe(0);
  });

  it('deletes inbox rows and sent outbox rows past their retention, in batches, and nothing else', async () => {
    const db = await ns.sql();
    await db.query(`INSERT INTO ${ns.inboxTable} (handler, message_id, handled_at) SELECT 'h', 'old-' || i, now() - interval '4 minutes' FROM generate_series(1, 20) i`);
    await db.query(`INSERT INTO ${ns.inboxTable} (handler, message_id) VALUES ('h', 'recent')`);
    const row = (status: string, sentAt: string) =>
      `SELECT gen_random_uuid(), 'cleanup.test', 1, '{}', '{}', now() - interval '1 day', '${status}', ${sentAt},
              now() + interval '1 hour', now() - interval '1 day' FROM generate_series(1, $1)`;
    const insert = (status: string, sentAt: string, count: number) =>
      db.query(
        `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, status, sent_at, available_at, created_at) ${row(status, sentAt)}`,
        [count],
      );
    await insert('sent', "now() - interval '2 minutes'", 15);
    await insert('sent', 'now()', 4);
    await insert('pending', 'NULL', 6);
    await insert('unroutable', 'NULL', 2);
    const count = async (where: string) =>
      (await db.query(`SELECT count(*)::int AS n FROM ${ns.outboxTable} WHERE event_name = 'cleanup.test' AND ${where}`)).rows[0].n;

    const deleted = await app.get(CleanupWorker).runOnce();
    expect(deleted).toEqual({ inbox: 20, outbox: 15 });
    expect((await db.query(`SELECT count(*)::int AS n FROM ${ns.inboxTable} WHERE message_id LIKE 'old-%'`)).rows[0].n).toBe(0);
    expect((await db.query(`SELECT count(*)::int AS n FROM ${ns.inboxTable} WHERE message_id = 'recent'`)).rows[0].n).toBe(1);
    expect(await count("status = 'sent'")).toBe(4);
    // Rows not sent are never deleted, however old.
    expect(await count("status = 'pending'")).toBe(6);
    expect(await count("status = 'unroutable'")).toBe(2);
  });
});

class StockCountedDomainEvent {
  constructor(
    readonly orderId: string,
    readonly attempt: number,
  ) {}
}

@Injectable()
class AttemptSignals {
  table = '';
  readonly byAttempt = new Map<number, AbortSignal>();
}

/** Raises a domain event; its @EventsHandler does the work, at the commit (the cqrs bridge). */
@IntegrationEventHandler(SlowWriteIntegrationEvent, { timeoutMs: 300, queue: `count-stock-${RUN}` })
class CountStock implements IIntegrationEventHandler<SlowWriteIntegrationEvent> {
  constructor(
    private readonly eventBus: EventBus,
    private readonly signals: AttemptSignals,
  ) {}

  handle(event: SlowWriteIntegrationEvent, context: IntegrationEventContext): void {
    this.signals.byAttempt.set(context.attempt, context.signal);
    this.eventBus.publish(new StockCountedDomainEvent(event.orderId, context.attempt));
  }
}

/** Writes, then on the first attempt outlasts that attempt's timeout before returning. */
@EventsHandler(StockCountedDomainEvent)
class StockCountedHandler implements IEventHandler<StockCountedDomainEvent> {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly signals: AttemptSignals,
  ) {}

  async handle(event: StockCountedDomainEvent): Promise<void> {
    await this.txHost.tx.query(`INSERT INTO ${this.signals.table} (order_id, message_id) VALUES ($1, $2)`, [event.orderId, `attempt-${event.attempt}`]);
    const signal = this.signals.byAttempt.get(event.attempt)!;
    if (event.attempt === 1) await untilAborted(signal);
  }
}

class SlowCommitRaisedDomainEvent {
  constructor(readonly orderId: string) {}
}

/** The same through the cqrs bridge: the write that makes the COMMIT slow is done by a domain-event handler. */
@IntegrationEventHandler(SlowCommitIntegrationEvent, { timeoutMs: 1_000, retry: { maxAttempts: 1 } })
class SlowCommitThroughCqrs implements IIntegrationEventHandler<SlowCommitIntegrationEvent> {
  constructor(private readonly eventBus: EventBus) {}

  handle(event: SlowCommitIntegrationEvent): void {
    this.eventBus.publish(new SlowCommitRaisedDomainEvent(event.orderId));
  }
}

@EventsHandler(SlowCommitRaisedDomainEvent)
class SlowCommitRaisedHandler implements IEventHandler<SlowCommitRaisedDomainEvent> {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly signals: AttemptSignals,
  ) {}

  async handle(event: SlowCommitRaisedDomainEvent): Promise<void> {
    await this.txHost.tx.query(`INSERT INTO ${this.signals.table.replace(/ledger$/, 'slow_commit')} (order_id) VALUES ($1)`, [event.orderId]);
  }
}

@IntegrationEvent({ name: 'inbox.hangs-once', version: 1 })
class HangsOnceIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/** Holds the first attempt of every message until the test lets go. */
@Injectable()
class HangRelease {
  release: () => void = () => undefined;
  readonly released = new Promise<void>((resolve) => (this.release = resolve));
}

/** Its first attempt ignores its signal and hangs past its 2 s timeout, until the test lets go. */
@IntegrationEventHandler(HangsOnceIntegrationEvent, { timeoutMs: 2_000 })
class HangsOnce implements IIntegrationEventHandler<HangsOnceIntegrationEvent> {
  readonly attempts: number[] = [];
  constructor(private readonly hang: HangRelease) {}

  async handle(_event: HangsOnceIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.attempts.push(context.attempt);
    if (context.attempt === 1) await this.hang.released;
  }
}

describe('inbox: a retry waiting for a call given up on its timeout', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await ledgerNamespace();
  });

  afterAll(async () => {
    await ns?.cleanup();
  });

  it('goes back to its queue at shutdown, never started, instead of holding the shutdown up', async () => {
    const logs = new CapturingLogger();
    const app = await startTestApp(ns, { logger: logs, providers: [HangRelease, HangsOnce], options: { consumer: { retry: { initialDelayMs: 20, maxDelayMs: 40 } } } });
    const hang = app.get(HangRelease);
    const waits = jest.spyOn(AbandonedCalls.prototype, 'of');
    const queue = `${ns.serviceName}.HangsOnce`;
    let closing: Promise<void> | undefined;
    try {
      await ns.publishRaw('inbox.hangs-once', JSON.stringify({ orderId: 'hung' }), { messageId: 'm-hung' });
      // Attempt 1 is given up after 2 s; attempt 2 then waits for it in the process, for up to 2 s.
      await eventually(() => expect(waits.mock.results.some((result) => result.value !== undefined)).toBe(true), { timeoutMs: 10_000 });
      closing = app.close();
      await eventually(() =>
        expect(logs.text).toContain(
          `Message m-hung on ${queue} goes back to the queue at shutdown: The call for ${queue} was still waiting for an earlier ` +
            'attempt of its message, given up on its timeout, to end when the application began shutting down; it never started',
        ),
      );
      // Attempt 1 ends (its transaction rolls back), and its connection lets the DataSource close.
      hang.release();
      await closing;
    } finally {
      waits.mockRestore();
      hang.release();
      await (closing ?? app.close());
    }
    expect(app.get(HangsOnce).attempts).toEqual([1]);
    expect(await ns.queueDepth(queue)).toBe(1);
  });
});

describe('inbox with the cqrs bridge', () => {
  let ns: TestNamespace;
  let app: TestingModule;

  beforeAll(async () => {
    ns = await ledgerNamespace();
    app = await startTestApp(ns, {
      imports: [CqrsModule.forRoot()],
      providers: [AttemptSignals, CountStock, StockCountedHandler, SlowCommitThroughCqrs, SlowCommitRaisedHandler],
      options: { consumer: { retry: { initialDelayMs: 20, maxDelayMs: 40 } } },
    });
    app.get(AttemptSignals).table = `"${ns.schema}".ledger`;
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  it('rolls back an attempt abandoned while its domain-event handlers ran at the commit', async () => {
    await ns.publishRaw('inbox.slow-write', JSON.stringify({ orderId: 'counted' }), { messageId: 'm-counted' });
    const rows = async () =>
      (await (await ns.sql()).query(`SELECT message_id FROM "${ns.schema}".ledger WHERE order_id = 'counted'`)).rows.map((r: { message_id: string }) => r.message_id);
    // Attempt 1's domain-event handler wrote at the commit and returned after the attempt's 300 ms
    // timeout: committing it would record the message as handled by an attempt counted as failed.
    await eventually(async () => expect(await rows()).toHaveLength(1), { timeoutMs: 10_000 });
    await consistently(async () => expect(await rows()).toEqual([expect.not.stringMatching(/^attempt-1$/)]), { forMs: 500 });
    expect(app.get(AttemptSignals).byAttempt.size).toBeGreaterThanOrEqual(2);
  });

  it('acknowledges an attempt whose timeout passes while its COMMIT is on its way, after its domain-event handlers', async () => {
    await expectHandledDespiteSlowCommit(ns, 'SlowCommitThroughCqrs', 'slow-commit-cqrs');
  });
});

describe('inbox at boot', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await TestNamespace.create();
  });

  afterAll(async () => {
    await ns?.cleanup();
  });

  it('fails boot when the inbox table is missing, naming the fix', async () => {
    await expect(
      bootRefused(ns, { providers: [Ledger, TakePayment], options: { inbox: { table: 'no_inbox_here' } } }),
    ).rejects.toThrow(InboxTableMissingError);
  });

  it('fails boot when the inbox options name a table that is not an inbox table, naming the columns it lacks', async () => {
    const db = await ns.sql();
    await db.query(`CREATE TABLE "${ns.schema}".payments (message_id text PRIMARY KEY)`);
    const error = (await startTestApp(ns, { providers: [Ledger, TakePayment], options: { inbox: { table: 'payments' } } }).catch(
      (e: unknown) => e,
    )) as TableShapeMismatchError;
    expect(error).toBeInstanceOf(TableShapeMismatchError);
    expect(error).toMatchObject({ kind: 'inbox', table: `"${ns.schema}"."payments"`, missingColumns: ['handler', 'handled_at'] });
  });

  it('refuses to clean up a table of the inbox\'s name that is not an inbox table, and deletes nothing from it', async () => {
    const db = await ns.sql();
    await db.query(`CREATE TABLE "${ns.schema}".audit (message_id text, handled_at timestamptz)`);
    await db.query(`INSERT INTO "${ns.schema}".audit VALUES ('m-1', now() - interval '1 year')`);
    const app = await startTestApp(ns, { providers: [], options: { inbox: { table: 'audit' } } });
    try {
      await expect(app.get(CleanupWorker).runOnce()).rejects.toMatchObject({ name: 'TableShapeMismatchError', kind: 'inbox', missingColumns: ['handler'] });
    } finally {
      await app.close();
    }
    expect((await db.query(`SELECT count(*)::int AS n FROM "${ns.schema}".audit`)).rows).toEqual([{ n: 1 }]);
  });

  it('leaves the inbox out of the cleanup in a service that has no inbox table and no handler using it', async () => {
    const app = await startTestApp(ns, { providers: [], options: { inbox: { table: 'no_inbox_here' } } });
    try {
      await expect(app.get(CleanupWorker).runOnce()).resolves.toEqual({ outbox: 0, inbox: 0 });
    } finally {
      await app.close();
    }
  });

  it('runs a full cleanup on request with cleanup off, and cleans the inbox of a handler that opts in alone', async () => {
    // The README's set-up for running the cleanup on one's own schedule, in a service whose module turns
    // the inbox off and whose one handler turns it on for itself.
    const app = await startTestApp(ns, {
      providers: [OptsIntoInbox],
      options: {
        // The least its inbox may keep: twice its timeout (60 s by default), then twice its longest retry
        // delay (5 minutes by default).
        inbox: { enabled: false, retentionMs: 720_000 },
        outbox: { retentionMs: 60_000 },
        cleanup: { enabled: false, batchSize: 7 },
      },
    });
    try {
      const db = await ns.sql();
      await db.query(`INSERT INTO ${ns.inboxTable} (handler, message_id, handled_at) SELECT 'h', 'manual-' || i, now() - interval '20 minutes' FROM generate_series(1, 20) i`);
      await db.query(
        `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, status, sent_at, available_at, created_at)
         SELECT gen_random_uuid(), 'cleanup.manual', 1, '{}', '{}', now(), 'sent', now() - interval '2 minutes', now(), now() FROM generate_series(1, 15)`,
      );
      // Every old row, batch after batch (7 + 7 + 6 and 7 + 7 + 1), not one batch of each.
      await expect(app.get(CleanupWorker).runOnce()).resolves.toEqual({ outbox: 15, inbox: 20 });
      expect((await db.query(`SELECT count(*)::int AS n FROM ${ns.inboxTable} WHERE message_id LIKE 'manual-%'`)).rows[0].n).toBe(0);
    } finally {
      await app.close();
    }
  });

  it('ends a run asked for with runOnce() after its current batch when the application stops', async () => {
    // No relay: the application's close reaches the cleanup's stop at once.
    const app = await startTestApp(ns, {
      providers: [],
      options: { relay: { enabled: false }, outbox: { retentionMs: 60_000 }, inbox: { retentionMs: 60_000 }, cleanup: { enabled: false, batchSize: 7 } },
    });
    let run: Promise<{ outbox: number; inbox: number }> | undefined;
    try {
      const db = await ns.sql();
      await db.query(
        `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, status, sent_at, available_at, created_at)
         SELECT gen_random_uuid(), 'cleanup.stopped', 1, '{}', '{}', now(), 'sent', now() - interval '2 minutes', now(), now() FROM generate_series(1, 30)`,
      );
      await db.query(`INSERT INTO ${ns.inboxTable} (handler, message_id, handled_at) SELECT 'h', 'stopped-' || i, now() - interval '2 minutes' FROM generate_series(1, 10) i`);
      run = app.get(CleanupWorker).runOnce();
    } finally {
      // Shutdown waits for the run, which stops after the batch it is in (a cron-driven run, say).
      await app.close();
    }
    try {
      // Stopped in the outbox's batches: the inbox is left for the next run.
      expect(await run).toEqual({ outbox: 7, inbox: 0 });
      expect((await (await ns.sql()).query(`SELECT count(*)::int AS n FROM ${ns.inboxTable} WHERE message_id LIKE 'stopped-%'`)).rows[0].n).toBe(10);
    } finally {
      await (await ns.sql()).query(`DELETE FROM ${ns.outboxTable} WHERE event_name = 'cleanup.stopped'`);
      await (await ns.sql()).query(`DELETE FROM ${ns.inboxTable} WHERE message_id LIKE 'stopped-%'`);
    }
  });

  it('waits, on stop(), for a runOnce() started while it waits, and ends it after its batch too', async () => {
    const app = await startTestApp(ns, { providers: [], options: { outbox: { retentionMs: 60_000 }, cleanup: { enabled: false, batchSize: 7 } } });
    try {
      await (await ns.sql()).query(
        `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, status, sent_at, available_at, created_at)
         SELECT gen_random_uuid(), 'cleanup.late', 1, '{}', '{}', now(), 'sent', now() - interval '2 minutes', now(), now() FROM generate_series(1, 30)`,
      );
      const worker = app.get(CleanupWorker);
      const first = worker.runOnce();
      // A second run starts the moment the first ends, while stop() waits (a cron firing, say).
      const second = first.then(() => worker.runOnce());
      const stopping = worker.stop();
      await stopping;
      const state = await Promise.race([second.then(() => 'settled'), new Promise((resolve) => setImmediate(() => resolve('running')))]);
      expect(state).toBe('settled');
      expect((await first).outbox + (await second).outbox).toBeLessThan(30);
    } finally {
      await app.close();
      await (await ns.sql()).query(`DELETE FROM ${ns.outboxTable} WHERE event_name = 'cleanup.late'`);
    }
  });

  it('fails boot when the nestjs-cls transactions run on another DataSource than the library\'s', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        // The application's DataSource, where its nestjs-cls transactions run, and the one the library is
        // told to use, with its outbox and inbox.
        ...transactionsOnAnotherDataSource(ns),
        IntegrationEventsModule.forRoot({ ...testOptions(ns), dataSourceName: 'events' }),
      ],
      providers: [InboxOnlyHandler],
    }).compile();
    try {
      const boot = moduleRef.init();
      await expect(boot).rejects.toThrow(TransactionsNotConfiguredError);
      await expect(boot).rejects.toThrow(/on the DataSource the library uses \("events"\).*getDataSourceToken\('events'\)/s);
    } finally {
      await moduleRef.close();
    }
  });

  it('fails boot when a handler uses the inbox but nestjs-cls transactions are not registered', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ type: 'postgres', url: TEST_DATABASE_URL, extra: { allowExitOnIdle: true } }),
        IntegrationEventsModule.forRoot(testOptions(ns)),
      ],
      providers: [InboxOnlyHandler],
    }).compile();
    try {
      await expect(moduleRef.init()).rejects.toThrow(TransactionsNotConfiguredError);
    } finally {
      await moduleRef.close();
    }
  });
});

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { inbox: true })
class OptsIntoInbox implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class InboxOnlyHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEvent({ name: 'inbox.held-duplicate', version: 1 })
class HeldDuplicateIntegrationEvent {
  constructor(readonly n: number) {}
}

/** Two calls at once, one attempt each; the first stays in its transaction until `release()`. */
@IntegrationEventHandler(HeldDuplicateIntegrationEvent, { concurrency: 2, retry: { maxAttempts: 1 } })
class HeldDuplicate implements IIntegrationEventHandler<HeldDuplicateIntegrationEvent> {
  calls = 0;
  release: () => void = () => undefined;
  private readonly released = new Promise<void>((resolve) => (this.release = resolve));
  async handle(): Promise<void> {
    if (++this.calls === 1) await this.released;
  }
}

describe('inbox in REPEATABLE READ transactions (the adapter\'s defaultTxOptions)', () => {
  it('acknowledges a concurrent duplicate as handled, instead of failing it on the serialization error', async () => {
    const ns = await TestNamespace.create();
    const moduleRef = await Test.createTestingModule({
      imports: [...infrastructureImports(ns, { isolationLevel: 'REPEATABLE READ' }), IntegrationEventsModule.forRoot(testOptions(ns))],
      providers: [HeldDuplicate],
    }).compile();
    moduleRef.useLogger(false);
    const handler = moduleRef.get(HeldDuplicate);
    try {
      await moduleRef.init();
      trackHandlerQueues(ns, moduleRef);
      const queue = `${ns.serviceName}.HeldDuplicate`;
      const body = JSON.stringify({ n: 1 });
      for (let i = 0; i < 2; i++) await ns.publishRaw('inbox.held-duplicate', body, { messageId: 'm-held-duplicate' });
      await eventually(() => expect(handler.calls).toBe(1));
      // The second copy's inbox record waits on the first one's, whose transaction is open.
      const waitingOnTheRecord = async () =>
        Number(
          (
            await (await ns.sql()).query(
              "SELECT count(*) AS waiting FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
              [`%${ns.schema}%integration_events_inbox%`],
            )
          ).rows[0].waiting,
        );
      await eventually(async () => expect(await waitingOnTheRecord()).toBe(1));
      handler.release();
      // Its one attempt did not fail: nothing dead-lettered, and the handler ran once.
      await eventually(async () => {
        const channel = await (await ns.amqp()).createChannel();
        try {
          expect((await channel.checkQueue(queue)).messageCount).toBe(0);
        } finally {
          await channel.close();
        }
        expect(await waitingOnTheRecord()).toBe(0);
      });
      await consistently(async () => expect(await ns.queueDepth(`${queue}.dlq`)).toBe(0), { forMs: 500 });
      expect(handler.calls).toBe(1);
    } finally {
      handler.release();
      await moduleRef.close();
      await ns.cleanup();
    }
  });
});
