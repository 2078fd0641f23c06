import { Injectable, type ModuleMetadata } from '@nestjs/common';
import { CqrsModule, EventBus, EventsHandler, type IEventHandler } from '@nestjs/cqrs';
import { Test, type TestingModule } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional, Propagation, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { DataSource, type EntitySubscriberInterface, type MigrationInterface, type QueryRunner } from 'typeorm';
import {
  createInboxMigration,
  createOutboxMigration,
  IntegrationEvent,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  OutboxAdminService,
  TableShapeMismatchError,
  TransactionAbortedError,
  TransactionTurns,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { IntegrationEventsTestingModule, IntegrationEventsTestKit } from 'nestjs-integration-events/testing';
import { SqliteConnection } from '../libs/integration-events/src/outbox/sqlite-connection';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { untilAborted } from './support/until-aborted';

/** Relay polls (20 ms in the testing module) that a transaction below stays open across. */
const TEN_POLLS_MS = 200;

/**
 * Writes a ledger entry per order in its inbox transaction; `busy-…` orders take 5 ms in it, and the
 * first attempt for `slow-failure` fails late.
 */
@Injectable()
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class LedgerHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly started: string[] = [];
  /** What the retries of `seat-conflict…` orders were told of the attempt before. */
  readonly lastErrors: Array<[string, unknown]> = [];
  constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}

  async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.started.push(event.orderId);
    if (event.orderId.startsWith('seat-conflict') && context.attempt > 1) this.lastErrors.push([event.orderId, context.headers['ie-last-error']]);
    if (event.orderId.startsWith('seat-conflict') && context.attempt === 1) {
      // A conflict that makes SQLite roll the whole transaction back (the seat is taken), caught or not.
      const conflict = this.txHost.tx.query("INSERT OR ROLLBACK INTO seats VALUES ('1A')");
      if (event.orderId === 'seat-conflict-rethrown') await conflict;
      else await conflict.catch(() => undefined);
    }
    if (event.orderId.startsWith('nested-seat-conflict') && context.attempt > 1) this.lastErrors.push([event.orderId, context.headers['ie-last-error']]);
    if (event.orderId.startsWith('nested-seat-conflict') && context.attempt === 1) {
      // The same conflict in a savepoint: SQLite rolls back the whole transaction, savepoints and all.
      const nested = this.txHost.withTransaction(Propagation.Nested, async () => {
        const conflict = this.txHost.tx.query("INSERT OR ROLLBACK INTO seats VALUES ('1A')");
        if (event.orderId === 'nested-seat-conflict-rethrown') await conflict;
        else await conflict.catch(() => undefined);
      });
      if (event.orderId === 'nested-seat-conflict-rethrown') await nested;
      else await nested.catch(() => undefined);
    }
    await this.txHost.tx.query('INSERT INTO ledger_entries (order_id) VALUES (?)', [event.orderId]);
    if (event.orderId.startsWith('busy-')) await new Promise((resolve) => setTimeout(resolve, 5));
    if (event.orderId === 'slow-failure' && context.attempt === 1) {
      // Stays in its transaction while the other delivery is handled (if it is let in), then fails.
      await new Promise((resolve) => setTimeout(resolve, TEN_POLLS_MS));
      throw new Error('failed late');
    }
  }
}

@IntegrationEvent({ name: 'ledger.slow-entry', version: 1 })
class SlowEntryEvent {
  constructor(readonly n: number) {}
}

/** 400 ms in its inbox transaction, with a timeout of 1 s: three at once take turns for 1.2 s. */
@IntegrationEventHandler(SlowEntryEvent, { timeoutMs: 1_000, concurrency: 3 })
class SlowEntryHandler implements IIntegrationEventHandler<SlowEntryEvent> {
  readonly attempts: Array<[number, number]> = [];
  async handle(event: SlowEntryEvent, context: IntegrationEventContext): Promise<void> {
    this.attempts.push([event.n, context.attempt]);
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

@IntegrationEvent({ name: 'ledger.gated-entry', version: 1 })
class GatedEntryEvent {
  constructor(readonly orderId: string) {}
}

/** Writes its entry, then stays in its inbox transaction until `open()`; its first attempt then fails. */
@IntegrationEventHandler(GatedEntryEvent)
class GatedEntryHandler implements IIntegrationEventHandler<GatedEntryEvent> {
  readonly attempts: number[] = [];
  open: () => void = () => undefined;
  private readonly gate = new Promise<void>((resolve) => (this.open = resolve));
  constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}

  async handle(event: GatedEntryEvent, context: IntegrationEventContext): Promise<void> {
    this.attempts.push(context.attempt);
    await this.txHost.tx.query('INSERT INTO ledger_entries (order_id) VALUES (?)', [`${event.orderId}/attempt-${context.attempt}`]);
    await this.gate;
    if (context.attempt === 1) throw new Error('fails after the gate');
  }
}

/**
 * SQLite through TypeORM has one connection, shared by every transaction: the library's own work must
 * stay out of the application's transactions and out of each other's (`SqliteConnection`).
 */
describe('SQLite: one connection for every transaction', () => {
  let moduleRef: TestingModule;
  let kit: IntegrationEventsTestKit;
  let host: TransactionHost<TransactionalAdapterTypeOrm>;
  let dataSource: DataSource;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({
          type: 'better-sqlite3',
          database: ':memory:',
          migrations: [createOutboxMigration(), createInboxMigration()],
          migrationsRun: true,
        }),
        ClsModule.forRoot({
          global: true,
          plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })],
        }),
        IntegrationEventsTestingModule.forRoot({ serviceName: 'ledger' }),
      ],
      providers: [LedgerHandler, SlowEntryHandler, GatedEntryHandler],
    }).compile();
    moduleRef.useLogger(false);
    await moduleRef.init();
    kit = moduleRef.get(IntegrationEventsTestKit);
    host = moduleRef.get(TransactionHost);
    dataSource = moduleRef.get(DataSource);
    await dataSource.query('CREATE TABLE ledger_entries (order_id TEXT NOT NULL)');
  });

  afterEach(async () => {
    await moduleRef?.close();
  });

  const publishedOrders = () => kit.publishedEvents(OrderCreatedIntegrationEvent).map((event) => event.orderId);
  const outboxRows = () => dataSource.query('SELECT status FROM integration_events_outbox') as Promise<Array<{ status: string }>>;
  /** Seat 1A, already taken: an `INSERT OR ROLLBACK` of it again makes SQLite roll the whole transaction back. */
  const takeSeat1A = async () => {
    await dataSource.query('CREATE TABLE seats (seat TEXT PRIMARY KEY)');
    await dataSource.query("INSERT INTO seats VALUES ('1A')");
  };
  /** Whether SQLite itself has a transaction open on the one connection. */
  const sqliteInTransaction = () => (dataSource.driver as unknown as { databaseConnection: { inTransaction: boolean } }).databaseConnection.inTransaction;

  it('never publishes the event of a transaction that rolls back, however long it stays open', async () => {
    const publisher = moduleRef.get(IntegrationEventPublisher);
    await expect(
      host.withTransaction(async () => {
        // Not handed to the relay at the commit (delayed), so only a claim could find it.
        await publisher.publish(new OrderCreatedIntegrationEvent('rolled-back'), { delay: 1 });
        // The scenario: the relay polls while this transaction is open (a claim run inside it would see the row).
        await new Promise((resolve) => setTimeout(resolve, TEN_POLLS_MS));
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');

    await kit.drain();
    expect(publishedOrders()).toEqual([]);
    expect(await outboxRows()).toEqual([]);
  });

  it('never publishes a row undone by a ROLLBACK TO a savepoint the application sent as SQL; publishes the rows that stayed', async () => {
    const publisher = moduleRef.get(IntegrationEventPublisher);
    await host.withTransaction(async () => {
      await publisher.publish(new OrderCreatedIntegrationEvent('before-the-savepoint'));
      await host.tx.query('SAVEPOINT app_savepoint');
      await publisher.publish(new OrderCreatedIntegrationEvent('undone'));
      await host.tx.query('ROLLBACK TO app_savepoint');
      await host.tx.query('RELEASE app_savepoint');
      await publisher.publish(new OrderCreatedIntegrationEvent('after-the-rollback'));
    });
    await kit.drain();
    expect(publishedOrders()).toEqual(['before-the-savepoint', 'after-the-rollback']);
    expect(await outboxRows()).toEqual([{ status: 'sent' }, { status: 'sent' }]);
  });

  it('refuses to publish in a transaction SQLite has rolled back itself (INSERT OR ROLLBACK), instead of committing the row on its own', async () => {
    const publisher = moduleRef.get(IntegrationEventPublisher);
    await takeSeat1A();
    const booking = host.withTransaction(async () => {
      // A conflict that makes SQLite roll the whole transaction back; the caller catches it and goes on.
      await expect(host.tx.query("INSERT OR ROLLBACK INTO seats VALUES ('1A')")).rejects.toThrow('UNIQUE');
      await publisher.publish(new OrderCreatedIntegrationEvent('seat-taken'));
    });
    await expect(booking).rejects.toThrow(TransactionAbortedError);
    await kit.drain();
    expect(publishedOrders()).toEqual([]);
    expect(await outboxRows()).toEqual([]);

    // TypeORM's rollback of the transaction it still counted went through: the next one is a transaction
    // of its own, not a savepoint of a transaction that is gone, and its event goes out.
    await host.withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('next-booking')));
    await kit.drain();
    expect(publishedOrders()).toEqual(['next-booking']);
    expect(await outboxRows()).toEqual([{ status: 'sent' }]);
  });

  it('fails a publish() of several statements whose failure made SQLite roll the transaction back with that failure, not "no such savepoint"', async () => {
    const publisher = moduleRef.get(IntegrationEventPublisher);
    // The last row of a publish() too large for one statement makes SQLite roll everything back, as a
    // full disk would.
    await dataSource.query(
      "CREATE TRIGGER outbox_full BEFORE INSERT ON integration_events_outbox WHEN NEW.payload LIKE '%\"full-disk\"%' " +
        "BEGIN SELECT RAISE(ROLLBACK, 'database or disk is full (simulated)'); END",
    );
    const events = Array.from({ length: 3_500 }, (_, i) => new OrderCreatedIntegrationEvent(i === 3_499 ? 'full-disk' : `bulk-${i}`));
    const bulk = host.withTransaction(() => publisher.publish(events));
    await expect(bulk).rejects.toThrow('database or disk is full (simulated)');
    expect(sqliteInTransaction()).toBe(false);
    expect(await outboxRows()).toEqual([]);
    await dataSource.query('DROP TRIGGER outbox_full');
    // The rollback that followed went through: the next transaction is one of its own.
    await host.withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('after-full-disk')));
    await kit.drain();
    expect(publishedOrders()).toEqual(['after-full-disk']);
  });

  it('fails a savepoint of a transaction SQLite rolled back with the reason, and refuses to publish in that transaction', async () => {
    const publisher = moduleRef.get(IntegrationEventPublisher);
    await takeSeat1A();
    let nestedError: unknown;
    let published = false;
    const booking = host.withTransaction(async () => {
      nestedError = await host
        .withTransaction(Propagation.Nested, async () => {
          await host.tx.query("INSERT OR ROLLBACK INTO seats VALUES ('1A')").catch(() => undefined);
        })
        .catch((error: unknown) => error);
      await publisher.publish(new OrderCreatedIntegrationEvent('after-a-rolled-back-savepoint'));
      published = true;
    });
    // Refused by publish() itself, as in a transaction SQLite rolled back at its own level.
    await expect(booking).rejects.toThrow(TransactionAbortedError);
    expect(published).toBe(false);
    // Not "no such savepoint": the savepoint's release says what happened to its transaction.
    expect(nestedError).toBeInstanceOf(TransactionAbortedError);
    await kit.drain();
    expect(publishedOrders()).toEqual([]);
    expect(await outboxRows()).toEqual([]);
    expect(sqliteInTransaction()).toBe(false);
  });

  it('refuses to commit an application transaction SQLite rolled back at a savepoint, instead of keeping only what came after', async () => {
    await takeSeat1A();
    const ledger = (orderId: string) => host.tx.query('INSERT INTO ledger_entries (order_id) VALUES (?)', [orderId]);
    // No publish, no domain event: only the library's reopening is involved.
    const booking = host.withTransaction(async () => {
      await ledger('before-the-savepoint');
      await host
        .withTransaction(Propagation.Nested, async () => {
          await host.tx.query("INSERT OR ROLLBACK INTO seats VALUES ('1A')");
        })
        .catch(() => undefined);
      await ledger('after-the-savepoint');
    });
    await expect(booking).rejects.toThrow(TransactionAbortedError);
    expect(await dataSource.query('SELECT order_id FROM ledger_entries')).toEqual([]);
    expect(sqliteInTransaction()).toBe(false);
  });

  it('fails the release of a savepoint opened after SQLite rolled its transaction back, though it did nothing of the library\'s', async () => {
    await takeSeat1A();
    let nestedError: unknown;
    const booking = host.withTransaction(async () => {
      await host.tx.query("INSERT OR ROLLBACK INTO seats VALUES ('1A')").catch(() => undefined);
      nestedError = await host
        .withTransaction(Propagation.Nested, () => host.tx.query('INSERT INTO ledger_entries (order_id) VALUES (?)', ['in-a-later-savepoint']))
        .catch((error: unknown) => error);
    });
    await expect(booking).rejects.toThrow(TransactionAbortedError);
    expect(nestedError).toBeInstanceOf(TransactionAbortedError);
    expect(await dataSource.query('SELECT order_id FROM ledger_entries')).toEqual([]);
  });

  it('refuses to publish in a savepoint opened after SQLite rolled its transaction back, whose release would commit the rows on their own', async () => {
    const publisher = moduleRef.get(IntegrationEventPublisher);
    await takeSeat1A();
    const booking = host.withTransaction(async () => {
      await host.tx.query("INSERT OR ROLLBACK INTO seats VALUES ('1A')").catch(() => undefined);
      await host.withTransaction(Propagation.Nested, () => publisher.publish(new OrderCreatedIntegrationEvent('in-a-later-savepoint')));
    });
    await expect(booking).rejects.toThrow(TransactionAbortedError);
    await kit.drain();
    expect(publishedOrders()).toEqual([]);
    expect(await outboxRows()).toEqual([]);
    expect(sqliteInTransaction()).toBe(false);
  });

  it('fails an inbox attempt whose transaction SQLite rolled back itself, caught or rethrown, and goes on working after it', async () => {
    await takeSeat1A();
    const ids = [await kit.deliver(new OrderCreatedIntegrationEvent('seat-conflict')), await kit.deliver(new OrderCreatedIntegrationEvent('seat-conflict-rethrown'))];
    await kit.drain();
    // Each failed its first attempt (not acknowledged as handled), and its retry was handled once.
    expect(moduleRef.get(LedgerHandler).started.filter((orderId) => orderId.startsWith('seat-conflict')).sort()).toEqual([
      'seat-conflict',
      'seat-conflict',
      'seat-conflict-rethrown',
      'seat-conflict-rethrown',
    ]);
    // The caught conflict failed the attempt as TransactionAbortedError, not as a failed COMMIT.
    const lastErrors = new Map(moduleRef.get(LedgerHandler).lastErrors);
    expect(String(lastErrors.get('seat-conflict'))).toMatch(/^TransactionAbortedError: The handler's transaction was not committed: SQLite had rolled/);
    expect(String(lastErrors.get('seat-conflict-rethrown'))).toContain('UNIQUE constraint failed');
    const inbox = (await dataSource.query(`SELECT message_id FROM integration_events_inbox WHERE message_id IN (?, ?)`, ids)) as unknown[];
    expect(inbox).toHaveLength(2);
    // TypeORM's rollbacks went through: the next transaction is one of its own, and its event goes out.
    await host.withTransaction(() => moduleRef.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('after-the-conflicts')));
    await kit.drain();
    expect(publishedOrders()).toContain('after-the-conflicts');
  });

  it('fails an inbox attempt whose transaction SQLite rolled back inside a savepoint, caught or rethrown, and goes on working after it', async () => {
    await takeSeat1A();
    const ids = [
      await kit.deliver(new OrderCreatedIntegrationEvent('nested-seat-conflict')),
      await kit.deliver(new OrderCreatedIntegrationEvent('nested-seat-conflict-rethrown')),
    ];
    await kit.drain();
    const handler = moduleRef.get(LedgerHandler);
    // Each failed its first attempt and was handled once by its retry.
    expect(handler.started.filter((orderId) => orderId.startsWith('nested-seat-conflict')).sort()).toEqual([
      'nested-seat-conflict',
      'nested-seat-conflict',
      'nested-seat-conflict-rethrown',
      'nested-seat-conflict-rethrown',
    ]);
    // Caught twice over, the conflict still failed the attempt: the transaction could not commit.
    const lastErrors = new Map(handler.lastErrors);
    expect(String(lastErrors.get('nested-seat-conflict'))).toMatch(/^TransactionAbortedError: .* was not committed: SQLite had rolled/);
    expect(String(lastErrors.get('nested-seat-conflict-rethrown'))).toContain('UNIQUE constraint failed');
    const inbox = (await dataSource.query(`SELECT message_id FROM integration_events_inbox WHERE message_id IN (?, ?)`, ids)) as unknown[];
    expect(inbox).toHaveLength(2);
    // TypeORM's savepoint and transaction rollbacks went through: no transaction is left open on the
    // connection, the next one is one of its own, and its event goes out.
    expect(sqliteInTransaction()).toBe(false);
    await host.withTransaction(() => moduleRef.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('after-the-nested-conflicts')));
    await kit.drain();
    expect(publishedOrders()).toContain('after-the-nested-conflicts');
    expect(sqliteInTransaction()).toBe(false);
  });

  it('marks a published row sent for good, though a transaction open meanwhile rolls back', async () => {
    const publisher = moduleRef.get(IntegrationEventPublisher);
    await host.withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('committed')));
    // The relay publishes it at once and marks it within 50 ms: while this transaction is open.
    await expect(
      host.withTransaction(async () => {
        await new Promise((resolve) => setTimeout(resolve, TEN_POLLS_MS));
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');

    await kit.drain();
    expect(publishedOrders()).toEqual(['committed']);
    expect(await outboxRows()).toEqual([{ status: 'sent' }]);
  });

  it('runs handler transactions one after another: a rollback never takes another handler\'s committed work', async () => {
    await kit.deliver(new OrderCreatedIntegrationEvent('slow-failure'));
    await kit.deliver(new OrderCreatedIntegrationEvent('quick-success'));
    await kit.drain();

    const handler = moduleRef.get(LedgerHandler);
    expect(handler.started.filter((id) => id === 'quick-success')).toHaveLength(1);
    const entries = (await dataSource.query('SELECT order_id FROM ledger_entries ORDER BY order_id')) as Array<{ order_id: string }>;
    expect(entries.map((entry) => entry.order_id)).toEqual(['quick-success', 'slow-failure']);
    const inbox = (await dataSource.query('SELECT count(*) AS handled FROM integration_events_inbox')) as Array<{ handled: number }>;
    expect(inbox[0]!.handled).toBe(2);
  });

  it('starts a handler\'s timeout when its transaction\'s turn comes, not while it waits for the others', async () => {
    for (let n = 1; n <= 3; n++) await kit.deliver(new SlowEntryEvent(n));
    await kit.drain();
    // Each ran once, on its first attempt: none timed out waiting behind the others.
    expect(moduleRef.get(SlowEntryHandler).attempts.sort()).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
    ]);
    expect(kit.broker.findQueue('ledger.SlowEntryHandler.dlq')?.depth).toBe(0);
  });

  it('lets the relay\'s statements in between handler transactions that keep coming', async () => {
    const handler = moduleRef.get(LedgerHandler);
    for (let n = 0; n < 100; n++) await kit.deliver(new OrderCreatedIntegrationEvent(`busy-${n}`));
    await new Promise((resolve) => setImmediate(resolve));
    expect(handler.started).toHaveLength(1);

    // A standalone publish runs between transactions: it must not wait for the whole run of 100.
    await moduleRef.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('standalone'), { standalone: true });
    expect(handler.started.length).toBeLessThan(50);
    await kit.drain();
    expect(handler.started).toHaveLength(101);
  });

  it('runs the statements waiting for a moment between transactions in the order they came (a mark before the next claim)', async () => {
    const connection = new SqliteConnection(dataSource);
    await dataSource.query('CREATE TABLE statement_order (name TEXT NOT NULL)');
    const runner = dataSource.createQueryRunner();
    await runner.startTransaction();
    const first = connection.run("INSERT INTO statement_order VALUES ('first')");
    // The scenario: the first has waited long enough to look only every 20 ms; the second, just come,
    // looks after 1 ms, right after the transaction ends.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = connection.run("INSERT INTO statement_order VALUES ('second')");
    await runner.commitTransaction();
    await runner.release();
    await Promise.all([first, second]);
    expect(await dataSource.query('SELECT name FROM statement_order ORDER BY rowid')).toEqual([{ name: 'first' }, { name: 'second' }]);
  });

  it('runs an application transaction given to TransactionTurns after an inbox transaction open meanwhile, so its rollback cannot take it', async () => {
    const handler = moduleRef.get(GatedEntryHandler);
    await kit.deliver(new GatedEntryEvent('gated'));
    await eventually(() => expect(handler.attempts).toEqual([1]));
    // An HTTP request's command while the handler's transaction is open: on the shared connection it
    // would become a savepoint of it, "committed" now and undone when the handler's attempt fails.
    const request = moduleRef
      .get(TransactionTurns)
      .run(() => host.withTransaction(async () => host.tx.query('INSERT INTO ledger_entries (order_id) VALUES (?)', ['request'])));
    handler.open();
    await request;
    await kit.drain();
    const entries = (await dataSource.query('SELECT order_id FROM ledger_entries ORDER BY rowid')) as Array<{ order_id: string }>;
    expect(entries.map((entry) => entry.order_id).sort()).toEqual(['gated/attempt-2', 'request']);
  });

  it('gives up a TransactionTurns turn still waited for when its signal fires: the work never runs, the turns after it do', async () => {
    const handler = moduleRef.get(GatedEntryHandler);
    await kit.deliver(new GatedEntryEvent('gated-long'));
    await eventually(() => expect(handler.attempts).toEqual([1]));
    const turns = moduleRef.get(TransactionTurns);
    let ran = false;
    const controller = new AbortController();
    const given = turns.run(async () => {
      ran = true;
    }, { signal: controller.signal });
    const next = turns.run(() => host.withTransaction(async () => host.tx.query('INSERT INTO ledger_entries (order_id) VALUES (?)', ['after-the-given-up'])));
    let outcome = 'waiting';
    given.then(
      () => (outcome = 'ran'),
      (error: Error) => (outcome = `rejected: ${error.message}`),
    );
    controller.abort(new Error('the request gave up'));
    try {
      // Given up while the inbox transaction still holds the turn.
      await eventually(() => expect(outcome).toBe('rejected: the request gave up'), { timeoutMs: 2_000 });
      // One given up before its call: refused at once.
      await expect(turns.run(async () => undefined, { signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow('already');
    } finally {
      handler.open();
    }
    await next;
    await kit.drain();
    expect(ran).toBe(false);
    const entries = (await dataSource.query('SELECT order_id FROM ledger_entries ORDER BY rowid')) as Array<{ order_id: string }>;
    expect(entries.map((entry) => entry.order_id).sort()).toEqual(['after-the-given-up', 'gated-long/attempt-2']);
  });

  it('says OutboxAdminService is PostgreSQL-only, instead of failing with a SQL syntax error', async () => {
    const admin = moduleRef.get(OutboxAdminService);
    await expect(admin.list()).rejects.toThrow('OutboxAdminService works on a PostgreSQL outbox only');
    await expect(admin.skip({ ids: ['0190d6a5-0000-7000-8000-000000000000'] })).rejects.toThrow('PostgreSQL outbox only');
  });
});

describe('SQLite: tables of the configured names that are not the library\'s', () => {
  class CreateOrders implements MigrationInterface {
    readonly name = 'CreateOrders1700000000000';
    async up(queryRunner: QueryRunner): Promise<void> {
      await queryRunner.query('CREATE TABLE orders (id TEXT PRIMARY KEY, message_id TEXT)');
    }
    async down(): Promise<void> {}
  }

  it.each([
    ['outbox', { outbox: { table: 'orders' } }, [], ['seq', 'event_name', 'event_version', 'payload', 'headers']],
    ['inbox', { inbox: { table: 'orders' } }, [LedgerHandler], ['handler', 'handled_at']],
  ] as const)('fails boot when the %s options name one, naming the columns it lacks', async (kind, options, providers, missing) => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({
          type: 'better-sqlite3',
          database: ':memory:',
          migrations: [createOutboxMigration(), createInboxMigration(), CreateOrders],
          migrationsRun: true,
        }),
        ClsModule.forRoot({
          global: true,
          plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })],
        }),
        IntegrationEventsTestingModule.forRoot({ serviceName: 'ledger', ...options }),
      ],
      providers: [...providers],
    }).compile();
    moduleRef.useLogger(false);
    try {
      const error = (await moduleRef.init().catch((e: unknown) => e)) as TableShapeMismatchError;
      expect(error).toBeInstanceOf(TableShapeMismatchError);
      expect(error.kind).toBe(kind);
      expect(error.table).toBe('"orders"');
      expect(error.missingColumns).toEqual(expect.arrayContaining([...missing]));
      expect(error.missingColumns).not.toContain('message_id');
    } finally {
      await moduleRef.close().catch(() => undefined);
    }
  });
});

@IntegrationEvent({ name: 'ledger.outlasts-timeout', version: 1 })
class OutlastsTimeoutEvent {
  constructor(readonly n: number) {}
}

/** Outlasts its 100 ms timeout (returning once its signal fired), and is not retried. */
@IntegrationEventHandler(OutlastsTimeoutEvent, { timeoutMs: 100, retry: { maxAttempts: 1 } })
class OutlastsTimeoutHandler implements IIntegrationEventHandler<OutlastsTimeoutEvent> {
  calls = 0;
  async handle(_event: OutlastsTimeoutEvent, context: IntegrationEventContext): Promise<void> {
    this.calls++;
    const { signal } = context;
    await untilAborted(signal);
  }
}

class StockCountedDomainEvent {
  constructor(readonly sku: string) {}
}

class SeatHeldDomainEvent {
  constructor(readonly seat: string) {}
}

/** Records each event it handles, in the transaction that raised it. */
@EventsHandler(SeatHeldDomainEvent)
class SeatHeldHandler implements IEventHandler<SeatHeldDomainEvent> {
  readonly handled: string[] = [];
  handle(event: SeatHeldDomainEvent): void {
    this.handled.push(event.seat);
  }
}

class SeatRequestedDomainEvent {
  constructor(readonly seat: string) {}
}

class SeatLoggedDomainEvent {
  constructor(readonly seat: string) {}
}

/** Takes the seat, treating a conflict as "already taken" (a caught error SQLite answered by rolling all back). */
@EventsHandler(SeatRequestedDomainEvent)
class TakesSeat implements IEventHandler<SeatRequestedDomainEvent> {
  constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}
  async handle(event: SeatRequestedDomainEvent): Promise<void> {
    await this.txHost.tx.query('INSERT OR ROLLBACK INTO seats VALUES (?)', [event.seat]).catch(() => undefined);
  }
}

@EventsHandler(SeatLoggedDomainEvent)
class LogsSeat implements IEventHandler<SeatLoggedDomainEvent> {
  constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}
  async handle(event: SeatLoggedDomainEvent): Promise<void> {
    await this.txHost.tx.query('INSERT INTO seat_log (seat) VALUES (?)', [event.seat]);
  }
}

class SeatClaimedDomainEvent {
  constructor(readonly seat: string) {}
}

/** Waits for its gate, then takes the seat as TakesSeat does (a caught conflict SQLite answers by rolling all back). */
@EventsHandler(SeatClaimedDomainEvent)
class TakesSeatOnceOpened implements IEventHandler<SeatClaimedDomainEvent> {
  gate: Promise<void> = Promise.resolve();
  constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}
  async handle(event: SeatClaimedDomainEvent): Promise<void> {
    await this.gate;
    await this.txHost.tx.query('INSERT OR ROLLBACK INTO seats VALUES (?)', [event.seat]).catch(() => undefined);
  }
}

describe('SQLite: the inbox and the cqrs bridge on the one connection', () => {
  /** A service on SQLite with CqrsModule, seat 1A already taken. */
  const seatsApp = async (providers: ModuleMetadata['providers']): Promise<TestingModule> => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', migrations: [createOutboxMigration(), createInboxMigration()], migrationsRun: true }),
        ClsModule.forRoot({
          global: true,
          plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })],
        }),
        CqrsModule.forRoot(),
        IntegrationEventsTestingModule.forRoot({ serviceName: 'seats' }),
      ],
      providers,
    }).compile();
    moduleRef.useLogger(false);
    await moduleRef.init();
    const dataSource = moduleRef.get(DataSource);
    await dataSource.query('CREATE TABLE seats (seat TEXT PRIMARY KEY)');
    await dataSource.query("INSERT INTO seats VALUES ('1A')");
    await dataSource.query('CREATE TABLE seat_log (seat TEXT NOT NULL)');
    return moduleRef;
  };

  it('starts no further domain-event handler once one caught a statement SQLite answered by rolling the transaction back', async () => {
    const moduleRef = await seatsApp([TakesSeat, LogsSeat]);
    try {
      const host = moduleRef.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
      const eventBus = moduleRef.get(EventBus);
      const booking = host.withTransaction(async () => {
        eventBus.publish(new SeatRequestedDomainEvent('1A'));
        eventBus.publish(new SeatLoggedDomainEvent('1A'));
      });
      await expect(booking).rejects.toThrow(TransactionAbortedError);
      // LogsSeat would have run in what SQLite left: no transaction, its row committed on its own.
      expect(await moduleRef.get(DataSource).query('SELECT seat FROM seat_log')).toEqual([]);
    } finally {
      await moduleRef.close();
    }
  });

  it('runs no domain-event handler in a savepoint whose transaction SQLite rolled back, and fails its release', async () => {
    const moduleRef = await seatsApp([SeatHeldHandler]);
    try {
      const host = moduleRef.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
      const eventBus = moduleRef.get(EventBus);
      let nestedError: unknown;
      const booking = host.withTransaction(async () => {
        nestedError = await host
          .withTransaction(Propagation.Nested, async () => {
            eventBus.publish(new SeatHeldDomainEvent('1A'));
            await host.tx.query("INSERT OR ROLLBACK INTO seats VALUES ('1A')").catch(() => undefined);
          })
          .catch((error: unknown) => error);
        throw nestedError;
      });
      await expect(booking).rejects.toThrow(TransactionAbortedError);
      expect(nestedError).toBeInstanceOf(TransactionAbortedError);
      // Its handler would have run in a transaction that was gone, its writes committing on their own.
      expect(moduleRef.get(SeatHeldHandler).handled).toEqual([]);
    } finally {
      await moduleRef.close();
    }
  });

  it('rolls back cleanly when another commit hook fails while a domain-event handler runs and SQLite rolls the transaction back under it', async () => {
    const moduleRef = await seatsApp([TakesSeatOnceOpened, LogsSeat]);
    const dataSource = moduleRef.get(DataSource);
    try {
      const takes = moduleRef.get(TakesSeatOnceOpened);
      let openGate!: () => void;
      takes.gate = new Promise<void>((resolve) => (openGate = resolve));
      // TypeORM rolls back as soon as this hook throws; the handler goes on once that rollback has begun,
      // and its caught conflict makes SQLite roll the whole transaction back before TypeORM's ROLLBACK.
      const failingAudit: EntitySubscriberInterface = {
        beforeTransactionCommit: async () => {
          throw new Error('the audit trail is full');
        },
        beforeTransactionRollback: () => openGate(),
      };
      dataSource.subscribers.push(failingAudit);
      const host = moduleRef.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
      const eventBus = moduleRef.get(EventBus);
      const booking = host.withTransaction(async () => {
        eventBus.publish(new SeatClaimedDomainEvent('1A'));
        eventBus.publish(new SeatLoggedDomainEvent('1A'));
      });
      await expect(booking).rejects.toThrow('the audit trail is full');
      dataSource.subscribers.splice(dataSource.subscribers.indexOf(failingAudit), 1);
      // TypeORM's ROLLBACK went through: its one query runner is not left counting a transaction that is gone.
      expect(dataSource.createQueryRunner().isTransactionActive).toBe(false);
      // LogsSeat did not start after it.
      expect(await dataSource.query('SELECT seat FROM seat_log')).toEqual([]);
      // A later transaction is a transaction of its own: its rollback takes its rows.
      const later = host.withTransaction(async () => {
        eventBus.publish(new SeatLoggedDomainEvent('2B'));
        await host.tx.query("INSERT INTO seats VALUES ('2B')");
        throw new Error('changed my mind');
      });
      await expect(later).rejects.toThrow('changed my mind');
      expect(await dataSource.query("SELECT seat FROM seats WHERE seat = '2B'")).toEqual([]);
      await host.withTransaction(async () => eventBus.publish(new SeatLoggedDomainEvent('3C')));
      expect(await dataSource.query('SELECT seat FROM seat_log')).toEqual([{ seat: '3C' }]);
      expect(dataSource.createQueryRunner().isTransactionActive).toBe(false);
    } finally {
      await moduleRef.close();
    }
  });

  it('lets a later transaction that raises domain events commit after an inbox attempt was abandoned', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', migrations: [createOutboxMigration(), createInboxMigration()], migrationsRun: true }),
        ClsModule.forRoot({
          global: true,
          plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })],
        }),
        CqrsModule.forRoot(),
        IntegrationEventsTestingModule.forRoot({ serviceName: 'stock' }),
      ],
      providers: [OutlastsTimeoutHandler],
    }).compile();
    moduleRef.useLogger(false);
    await moduleRef.init();
    try {
      const kit = moduleRef.get(IntegrationEventsTestKit);
      await kit.deliver(new OutlastsTimeoutEvent(1));
      await kit.drain();
      expect(moduleRef.get(OutlastsTimeoutHandler).calls).toBe(1);
      // Every transaction runs on the query runner that attempt ran on: its abandoned state must not
      // follow them to their commit.
      const host = moduleRef.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
      const eventBus = moduleRef.get(EventBus);
      await expect(host.withTransaction(async () => eventBus.publish(new StockCountedDomainEvent('sku-1')))).resolves.toBeUndefined();
    } finally {
      await moduleRef.close();
    }
  });
});
