import type { TestingModule } from '@nestjs/testing';
import { Propagation, TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { Logger } from '@nestjs/common';
import { DataSource, type EntitySubscriberInterface, type TransactionCommitEvent } from 'typeorm';
import { IntegrationEventPublisher, InvalidPublishOptionsError, NoActiveTransactionError, TransactionAbortedError } from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { TEST_DATABASE_URL } from './support/services';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** Behaviour 1: the outbox row is written in the business transaction, and only a commit delivers it. */
describe('publish() in the business transaction', () => {
  let ns: TestNamespace;
  let app: TestingModule;
  let publisher: IntegrationEventPublisher;
  let txHost: TransactionHost<TransactionalAdapterTypeOrm>;
  let recorder: OrderCreatedRecorder;
  let dataSource: DataSource;

  beforeAll(async () => {
    ns = await TestNamespace.create();
    await (await ns.sql()).query(`CREATE TABLE "${ns.schema}".orders (id text PRIMARY KEY)`);
    app = await startTestApp(ns, { providers: [OrderCreatedRecorder] });
    publisher = app.get(IntegrationEventPublisher);
    txHost = app.get(TransactionHost);
    recorder = app.get(OrderCreatedRecorder);
    dataSource = app.get(DataSource);
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  beforeEach(() => {
    recorder.received.length = 0;
  });

  const insertOrder = (id: string) => txHost.tx.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ($1)`, [id]);
  const outerTxHost = () => txHost;
  const outerPublisher = () => publisher;
  const orderExists = async (id: string) =>
    (await (await ns.sql()).query(`SELECT 1 FROM "${ns.schema}".orders WHERE id = $1`, [id])).rowCount === 1;

  it('delivers an event published in the ambient (@Transactional) transaction once it commits', async () => {
    const placedAt = new Date('2026-11-26T06:00:00.000Z');
    const [messageId] = await txHost.withTransaction(async () => {
      await insertOrder('o-commit');
      return publisher.publish(new OrderCreatedIntegrationEvent('o-commit', placedAt));
    });

    await eventually(() => expect(recorder.received).toHaveLength(1));
    const { event, context } = recorder.received[0]!;
    expect(event).toBeInstanceOf(OrderCreatedIntegrationEvent);
    expect(event.orderId).toBe('o-commit');
    expect(event.placedAt).toBeInstanceOf(Date);
    expect(event.placedAt.toISOString()).toBe(placedAt.toISOString());
    expect(context.messageId).toBe(messageId);
    expect(context.attempt).toBe(1);
    expect(context.signal).toBeInstanceOf(AbortSignal);
    expect(context.signal.aborted).toBe(false);
    expect(await orderExists('o-commit')).toBe(true);
    await eventually(async () => expect((await ns.outboxRows()).find((r) => r.id === messageId)?.status).toBe('sent'));
  });

  it('never puts an event on the broker when the transaction rolls back', async () => {
    const probe = await ns.probe('ordering.order-created');
    await expect(
      txHost.withTransaction(async () => {
        await insertOrder('o-rollback');
        await publisher.publish(new OrderCreatedIntegrationEvent('o-rollback'));
        throw new Error('business rule violated');
      }),
    ).rejects.toThrow('business rule violated');

    // A committed event published afterwards arrives: anything rolled back would have arrived before it.
    await txHost.withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('o-after')));
    await eventually(() => expect(probe.messages.map((m) => JSON.parse(m.content.toString()).orderId)).toContain('o-after'));
    await consistently(() => {
      expect(probe.messages.map((m) => JSON.parse(m.content.toString()).orderId)).not.toContain('o-rollback');
      expect(recorder.received.map((r) => r.event.orderId)).not.toContain('o-rollback');
    });
    expect(await orderExists('o-rollback')).toBe(false);
    const db = await ns.sql();
    const { rows } = await db.query(`SELECT payload FROM ${ns.outboxTable}`);
    expect(rows.map((r: { payload: string }) => JSON.parse(r.payload).orderId)).not.toContain('o-rollback');
  });

  it.each([
    ['ROLLBACK', true],
    ['COMMIT', true],
    ['ROLLBACK', false],
    ['COMMIT', false],
  ])(
    'refuses a publish() of code the transaction did not await that comes once its %s was sent, writing nothing after it (prepared statements: %s)',
    async (ending, prepared) => {
      const orderId = `o-late-at-${ending.toLowerCase()}-${prepared}`;
      const other = prepared ? undefined : await startTestApp(ns, { options: { outbox: { preparedStatements: false } } });
      const txHost = other ? other.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost) : outerTxHost();
      const publisher = other ? other.get(IntegrationEventPublisher) : outerPublisher();
      const insertOrder = (id: string) => txHost.tx.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ($1)`, [id]);
      let late: Promise<string[]> | undefined;
      let restore = (): void => undefined;
      const work = txHost.withTransaction(async () => {
        await insertOrder(orderId);
        const manager = txHost.tx;
        // The moment the statement that ends the transaction is on its connection, awaiting PostgreSQL's
        // answer: the un-awaited branch of a Promise.all whose other branch failed, say, publishes now.
        const client = (await manager.queryRunner!.connect()) as { query: (...args: unknown[]) => unknown };
        const query = client.query;
        restore = () => {
          client.query = query;
        };
        client.query = function (this: unknown, ...args: unknown[]) {
          const sent = query.apply(this, args);
          if (args[0] === ending && !late) late = publisher.publish(new OrderCreatedIntegrationEvent(orderId), { manager });
          return sent;
        };
        if (ending === 'ROLLBACK') throw new Error('the other branch failed');
      });
      try {
        if (ending === 'ROLLBACK') await expect(work).rejects.toThrow('the other branch failed');
        else await work;
      } finally {
        restore();
        await other?.close();
      }
      expect(late).toBeDefined();
      await expect(late).rejects.toBeInstanceOf(NoActiveTransactionError);
      await expect(late).rejects.toThrow('its transaction was ending (its COMMIT or ROLLBACK had been sent)');
      const { rows } = await (await ns.sql()).query(`SELECT payload FROM ${ns.outboxTable}`);
      expect(rows.map((row: { payload: string }) => JSON.parse(row.payload).orderId)).not.toContain(orderId);
      expect(await orderExists(orderId)).toBe(ending === 'COMMIT');
    },
  );

  it('fails the commit of a transaction PostgreSQL aborted (a failed statement caught), and delivers nothing of it', async () => {
    const probe = await ns.probe('ordering.order-created');
    // The statement after the publish fails; the caller catches the error and returns normally. The
    // transaction is aborted, so PostgreSQL would answer its COMMIT with a ROLLBACK, and no error.
    const attempt = txHost.withTransaction(async () => {
      await insertOrder('o-aborted');
      const [id] = await publisher.publish(new OrderCreatedIntegrationEvent('o-aborted'));
      await insertOrder('o-aborted').catch(() => undefined); // a duplicate key, swallowed
      return id;
    });
    await expect(attempt).rejects.toThrow(TransactionAbortedError);
    await expect(attempt).rejects.toThrow(/aborted the transaction after one of its statements failed/);

    await txHost.withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('o-after-aborted')));
    await eventually(() => expect(probe.messages.map((m) => JSON.parse(m.content.toString()).orderId)).toContain('o-after-aborted'));
    await consistently(() => expect(probe.messages.map((m) => JSON.parse(m.content.toString()).orderId)).not.toContain('o-aborted'));
    expect(recorder.received.map((r) => r.event.orderId)).not.toContain('o-aborted');
    expect(await orderExists('o-aborted')).toBe(false);
    const { rows } = await (await ns.sql()).query(`SELECT payload FROM ${ns.outboxTable}`);
    expect(rows.map((r: { payload: string }) => JSON.parse(r.payload).orderId)).not.toContain('o-aborted');
  });

  it("fails the commit of a transaction whose publish() failed in PostgreSQL and was caught, instead of silently losing the caller's writes", async () => {
    const db = await ns.sql();
    // Every outbox INSERT now fails in PostgreSQL (a check violation), which aborts its transaction.
    await db.query(`ALTER TABLE ${ns.outboxTable} ADD CONSTRAINT refuse_every_row CHECK (false) NOT VALID`);
    try {
      const attempt = txHost.withTransaction(async () => {
        await insertOrder('o-publish-failed');
        await publisher.publish(new OrderCreatedIntegrationEvent('o-publish-failed')).catch(() => undefined); // swallowed
      });
      await expect(attempt).rejects.toThrow(TransactionAbortedError);
      await expect(attempt).rejects.toThrow(/^The transaction whose publish\(\) failed/);
      expect(await orderExists('o-publish-failed')).toBe(false);

      // The same failure undone by a savepoint leaves a sound transaction, which commits.
      await txHost.withTransaction(async () => {
        await insertOrder('o-publish-failed-nested');
        await txHost
          .withTransaction(Propagation.Nested, () => publisher.publish(new OrderCreatedIntegrationEvent('o-publish-failed-nested')))
          .catch(() => undefined);
      });
      expect(await orderExists('o-publish-failed-nested')).toBe(true);
    } finally {
      await db.query(`ALTER TABLE ${ns.outboxTable} DROP CONSTRAINT refuse_every_row`);
    }
    const { rows } = await db.query(`SELECT payload FROM ${ns.outboxTable}`);
    expect(rows.map((r: { payload: string }) => JSON.parse(r.payload).orderId)).not.toContain('o-publish-failed');
  });

  it("delivers nothing of a transaction whose COMMIT PostgreSQL answers with ROLLBACK: an application's commit hook caught a failed statement", async () => {
    const probe = await ns.probe('ordering.order-created');
    // An "audit must never break business" hook: TypeORM runs it side by side with the library's own
    // check, its statement reaches PostgreSQL after that check passed, and it swallows the failure.
    const swallowing: EntitySubscriberInterface = {
      async beforeTransactionCommit(event: TransactionCommitEvent) {
        await event.queryRunner.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ('o-audit-twice')`).catch(() => undefined);
      },
    };
    await (await ns.sql()).query(`INSERT INTO "${ns.schema}".orders (id) VALUES ('o-audit-twice')`);
    const warn = jest.spyOn(Logger.prototype, 'warn');
    dataSource.subscribers.push(swallowing);
    try {
      // No error: TypeORM does not look at what PostgreSQL answered the COMMIT.
      await txHost.withTransaction(async () => {
        await insertOrder('o-rolled-back-at-commit');
        await publisher.publish(new OrderCreatedIntegrationEvent('o-rolled-back-at-commit'));
      });
    } finally {
      dataSource.subscribers.splice(dataSource.subscribers.indexOf(swallowing), 1);
    }
    expect(await orderExists('o-rolled-back-at-commit')).toBe(false);
    expect(warn.mock.calls.map(([message]) => String(message))).toContainEqual(
      expect.stringContaining('A transaction that published integration events was rolled back by PostgreSQL at its COMMIT'),
    );
    warn.mockRestore();
    await txHost.withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('o-after-rolled-back')));
    await eventually(() => expect(probe.messages.map((m) => JSON.parse(m.content.toString()).orderId)).toContain('o-after-rolled-back'));
    await consistently(() => expect(probe.messages.map((m) => JSON.parse(m.content.toString()).orderId)).not.toContain('o-rolled-back-at-commit'));
    expect(recorder.received.map((r) => r.event.orderId)).not.toContain('o-rolled-back-at-commit');
  });

  it('tells an aborted transaction from a healthy one where node-postgres keeps no transaction status (before 8.21)', async () => {
    const hideStatus = () => {
      const client = (txHost.tx.queryRunner as unknown as { databaseConnection: Record<string, unknown> }).databaseConnection;
      client.getTransactionStatus = undefined; // shadows the method on this client only
      return () => delete client.getTransactionStatus;
    };
    let restore: (() => void) | undefined;
    try {
      await expect(
        txHost.withTransaction(async () => {
          restore = hideStatus();
          await insertOrder('o-aborted-old-pg');
          await publisher.publish(new OrderCreatedIntegrationEvent('o-aborted-old-pg'));
          await insertOrder('o-aborted-old-pg').catch(() => undefined);
        }),
      ).rejects.toThrow(TransactionAbortedError);
      restore?.();
      const [id] = await txHost.withTransaction(async () => {
        restore = hideStatus();
        return publisher.publish(new OrderCreatedIntegrationEvent('o-healthy-old-pg'));
      });
      await eventually(() => expect(recorder.received.map((r) => r.context.messageId)).toContain(id));
    } finally {
      restore?.();
    }
    expect(recorder.received.map((r) => r.event.orderId)).not.toContain('o-aborted-old-pg');
    expect(await orderExists('o-aborted-old-pg')).toBe(false);
  });

  it('leaves a transaction alone that undid its failed statement with a savepoint', async () => {
    const [id] = await txHost.withTransaction(async () => {
      await insertOrder('o-savepoint');
      const ids = await publisher.publish(new OrderCreatedIntegrationEvent('o-savepoint'));
      await txHost.withTransaction(Propagation.Nested, () => insertOrder('o-savepoint')).catch(() => undefined);
      return ids;
    });
    await eventually(() => expect(recorder.received.map((r) => r.context.messageId)).toContain(id));
    expect(await orderExists('o-savepoint')).toBe(true);
  });

  it('writes through an explicit EntityManager and its transaction', async () => {
    const ids = await dataSource.transaction(async (manager) => {
      await manager.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ($1)`, ['o-explicit']);
      return publisher.publish(
        [new OrderCreatedIntegrationEvent('o-explicit-1'), new OrderCreatedIntegrationEvent('o-explicit-2')],
        { manager },
      );
    });
    expect(ids).toHaveLength(2);
    await eventually(() =>
      expect(recorder.received.map((r) => r.context.messageId).sort()).toEqual([...ids].sort()),
    );
  });

  it('rolls back with an explicit EntityManager too', async () => {
    const queryRunner = dataSource.createQueryRunner();
    await queryRunner.startTransaction();
    const [id] = await publisher.publish(new OrderCreatedIntegrationEvent('o-explicit-rollback'), {
      manager: queryRunner.manager,
    });
    await queryRunner.rollbackTransaction();
    await queryRunner.release();
    await txHost.withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('o-marker')));
    await eventually(() => expect(recorder.received.map((r) => r.event.orderId)).toContain('o-marker'));
    expect(recorder.received.map((r) => r.context.messageId)).not.toContain(id);
    expect((await ns.outboxRows()).map((r) => r.id)).not.toContain(id);
  });

  it('refuses to publish outside a transaction, writing nothing', async () => {
    const before = (await ns.outboxRows()).length;
    await expect(publisher.publish(new OrderCreatedIntegrationEvent('o-no-tx'))).rejects.toBeInstanceOf(
      NoActiveTransactionError,
    );
    expect((await ns.outboxRows()).length).toBe(before);
  });

  it('checks an empty list of events as any other call: its transaction and its options', async () => {
    await expect(publisher.publish([])).rejects.toBeInstanceOf(NoActiveTransactionError);
    await expect(publisher.publish([], { standalone: true, delay: -1 })).rejects.toThrow(InvalidPublishOptionsError);
    await expect(publisher.publish([], { standalone: true, headers: { 'ie-event-name': 'x' } })).rejects.toThrow(/option "headers\.ie-event-name"/);
    await expect(publisher.publish([], { standalone: true, headers: new Map() as never })).rejects.toThrow(/not a Map/);
    await expect(publisher.publish([], { standalone: true, manager: dataSource.manager })).resolves.toEqual([]);
    await expect(dataSource.transaction((manager) => publisher.publish([], { manager }))).resolves.toEqual([]);
  });

  it('refuses an explicit EntityManager that is not in a transaction, unless standalone', async () => {
    const before = (await ns.outboxRows()).length;
    await expect(
      publisher.publish(new OrderCreatedIntegrationEvent('o-manager-no-tx'), { manager: dataSource.manager }),
    ).rejects.toThrow(/the EntityManager passed as \{ manager \} is not in a transaction/);
    expect((await ns.outboxRows()).length).toBe(before);
  });

  it('refuses an EntityManager of another DataSource', async () => {
    const other = new DataSource({ type: 'postgres', url: TEST_DATABASE_URL });
    await other.initialize();
    try {
      await expect(
        other.transaction((manager) => publisher.publish(new OrderCreatedIntegrationEvent('o-other-db'), { manager })),
      ).rejects.toThrow(/belongs to another DataSource/);
    } finally {
      await other.destroy();
    }
  });

  it('refuses publish options that could not be sent or read back, writing nothing', async () => {
    const before = (await ns.outboxRows()).length;
    const publish = (options: Parameters<IntegrationEventPublisher['publish']>[1]) =>
      publisher.publish(new OrderCreatedIntegrationEvent('o-bad-options'), { standalone: true, ...options });
    // Before 1970 amqplib cannot encode the timestamp property: the row would fail to publish for ever.
    await expect(publish({ occurredAt: new Date('1969-07-20T20:17:00Z') })).rejects.toThrow(/occurredAt.*1970-01-01T00:00:00.000Z to 9999-12-31/s);
    // A five-digit year's ISO form (+010000-…) is not what consumers accept: every one would dead-letter it.
    await expect(publish({ occurredAt: new Date(Date.UTC(10000, 0, 1)) })).rejects.toThrow(InvalidPublishOptionsError);
    await expect(publish({ occurredAt: new Date('not a date') })).rejects.toThrow(InvalidPublishOptionsError);
    // Null is a value, not "left out" (now).
    await expect(publish({ occurredAt: null as never })).rejects.toThrow('Invalid publish() option "occurredAt": pass a valid Date.');
    await expect(publish({ delay: -1 })).rejects.toThrow(InvalidPublishOptionsError);
    await expect(publish({ delay: 10, deliverAt: new Date() })).rejects.toThrow(InvalidPublishOptionsError);
    // Its ISO form (+010000-…) is no time PostgreSQL reads: refused before the insert, not by it.
    await expect(publish({ deliverAt: new Date(Date.UTC(10000, 0, 1)) })).rejects.toThrow(/deliverAt.*up to 9999-12-31T23:59:59.999Z/s);
    // A typo'd key would publish at once, a string `standalone` write outside the caller's transaction.
    await expect(publish({ delayMs: 60_000 } as never)).rejects.toThrow(
      'Invalid publish() option "delayMs": not an option of publish(); the options are manager, standalone, headers, correlationId, causationId, occurredAt, delay, deliverAt.',
    );
    await expect(publish({ deliverAT: new Date(Date.now() + 60_000) } as never)).rejects.toThrow(/option "deliverAT": not an option/);
    await expect(
      publisher.publish(new OrderCreatedIntegrationEvent('o-bad-options'), { standalone: 'false' } as never),
    ).rejects.toThrow('Invalid publish() option "standalone": use true or false, got string.');
    await expect(publisher.publish(new OrderCreatedIntegrationEvent('o-bad-options'), null as never)).rejects.toThrow(
      'Invalid publish() option "(options)": pass an object of options or leave them out, got null.',
    );
    await expect(publish({ manager: 'tx' as never })).rejects.toThrow(/option "manager": pass a TypeORM EntityManager/);
    expect(await ns.outboxRows()).toHaveLength(before);
    // The edges are fine.
    await publish({ occurredAt: new Date(0) });
    await publish({ occurredAt: new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999)) });
    await eventually(() => expect(recorder.received.filter((r) => r.event.orderId === 'o-bad-options').map((r) => r.context.occurredAt.toISOString()).sort()).toEqual(['1970-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z']));
  });

  it('writes its own durable row with { standalone: true } and delivers it', async () => {
    const [id] = await publisher.publish(new OrderCreatedIntegrationEvent('o-standalone'), { standalone: true });
    await eventually(() => expect(recorder.received.map((r) => r.context.messageId)).toContain(id));
  });
});
