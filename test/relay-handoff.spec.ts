import type { EventEmitter } from 'node:events';
import { Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { TestingModule } from '@nestjs/testing';
import { Propagation, TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { IntegrationEventPublisher, OutboxRelay, TransactionAbortedError } from 'nestjs-integration-events';
import { DataSource } from 'typeorm';
import { RabbitMqPublishingConnection } from '../libs/integration-events/src/transport/rabbitmq/rabbitmq.connection';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { CapturingLogger } from './support/capturing-logger';
import { consistently, eventually } from './support/eventually';
import { startTestApp, type TestAppOptions } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/**
 * The relay's fast lane: rows a transaction of this process writes are leased to its relay at the insert
 * and handed over at the commit (no claim); savepoints and rollbacks decide what is handed over.
 */
describe('outbox relay handoff', () => {
  let ns: TestNamespace;
  const apps: TestingModule[] = [];

  beforeEach(async () => {
    ns = await TestNamespace.create();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await ns.cleanup();
  });

  // A poll of an hour: whatever arrives within a test's deadline came through the handoff (or a claim
  // the relay was explicitly asked for).
  const start = async (relay: Record<string, number> = {}, more: TestAppOptions = {}) => {
    const app = await startTestApp(ns, { ...more, options: { relay: { pollIntervalMs: 3_600_000, ...relay }, consumer: { enabled: false } } });
    apps.push(app);
    return { app, txHost: app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost), publisher: app.get(IntegrationEventPublisher) };
  };
  const publish = (publisher: IntegrationEventPublisher, orderId: string) => publisher.publish(new OrderCreatedIntegrationEvent(orderId));
  const orderIds = (messages: Array<{ content: Buffer }>) => messages.map((m) => (JSON.parse(m.content.toString()) as { orderId: string }).orderId);

  it('writes the row leased to its own relay and sends it at the commit without a claim', async () => {
    const probe = await ns.probe('ordering.order-created');
    const { txHost, publisher } = await start();
    const lease = await txHost.withTransaction(async () => {
      const [id] = await publish(publisher, 'leased');
      const [row] = (await txHost.tx.query(
        `SELECT lease_token, locked_until > now() + interval '20 seconds' AS held FROM ${ns.outboxTable} WHERE id = $1`,
        [id],
      )) as Array<{ lease_token: string | null; held: boolean }>;
      return row;
    });
    expect(lease).toEqual({ lease_token: expect.stringMatching(/^[0-9a-f-]{36}$/), held: true });
    await eventually(() => expect(orderIds(probe.messages)).toEqual(['leased']), { timeoutMs: 3_000 });
    await eventually(async () => expect((await ns.outboxRows()).map((row) => row.status)).toEqual(['sent']));
  });

  it('leases at most ten batches\' worth of rows to one transaction that publishes many times; the rest wait for a claim', async () => {
    // Batches of 2: the lane holds 20 rows.
    const { txHost, publisher } = await start({ batchSize: 2 });
    const leased = await txHost.withTransaction(async () => {
      for (let i = 0; i < 25; i++) await publish(publisher, `bulk-${i}`);
      const rows = (await txHost.tx.query(`SELECT lease_token FROM ${ns.outboxTable} ORDER BY seq`)) as Array<{ lease_token: string | null }>;
      return rows.map((row) => row.lease_token !== null);
    });
    expect(leased).toEqual([...Array<boolean>(20).fill(true), ...Array<boolean>(5).fill(false)]);
  });

  it('counts the rows leased to every open transaction: concurrent ones never take the lane past ten batches', async () => {
    // Batches of 2: the lane holds 20 rows. Two transactions open at once, 15 rows each.
    const { txHost, publisher } = await start({ batchSize: 2 });
    const events = (prefix: string) => Array.from({ length: 15 }, (_, i) => new OrderCreatedIntegrationEvent(`${prefix}-${i}`));
    const leasedOf = async (prefix: string) =>
      ((await txHost.tx.query(`SELECT lease_token FROM ${ns.outboxTable} WHERE payload::jsonb->>'orderId' LIKE $1`, [`${prefix}-%`])) as Array<{
        lease_token: string | null;
      }>).filter((row) => row.lease_token !== null).length;
    let firstWrote!: () => void;
    const wrote = new Promise<void>((resolve) => (firstWrote = resolve));
    let finishFirst!: () => void;
    const mayFinish = new Promise<void>((resolve) => (finishFirst = resolve));
    const first = txHost.withTransaction(async () => {
      await publisher.publish(events('first'));
      firstWrote();
      await mayFinish;
      return leasedOf('first');
    });
    await wrote;
    // The first is still open: its 15 leased rows leave room for 5, not 15.
    const second = await txHost.withTransaction(async () => {
      await publisher.publish(events('second'));
      return leasedOf('second');
    });
    finishFirst();
    expect([await first, second]).toEqual([15, 0]);
  });

  it('gives the lane room of a rolled-back transaction (or savepoint) back at once', async () => {
    const { txHost, publisher } = await start({ batchSize: 2 });
    const events = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => new OrderCreatedIntegrationEvent(`${prefix}-${i}`));
    const leased = async () =>
      ((await txHost.tx.query(`SELECT lease_token FROM ${ns.outboxTable}`)) as Array<{ lease_token: string | null }>).filter((row) => row.lease_token !== null)
        .length;
    // Fills the lane (20 rows), then rolls back.
    await expect(
      txHost.withTransaction(async () => {
        await publisher.publish(events('rolled-back', 20));
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    // A savepoint that fills it and rolls back, inside a transaction that then leases the whole lane.
    const afterSavepoint = await txHost.withTransaction(async () => {
      await expect(
        txHost.withTransaction(Propagation.Nested, async () => {
          await publisher.publish(events('savepoint', 20));
          throw new Error('savepoint rolled back');
        }),
      ).rejects.toThrow('savepoint rolled back');
      await publisher.publish(events('after', 20));
      return leased();
    });
    expect(afterSavepoint).toBe(20);
  });

  it('gives the lane room back when a commit fails because PostgreSQL had aborted the transaction, before any rollback', async () => {
    const { app, publisher } = await start({ batchSize: 2 });
    const dataSource = app.get(DataSource);
    const events = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => new OrderCreatedIntegrationEvent(`${prefix}-${i}`));
    // A hand-made transaction fills the lane (20 rows), then a statement fails in it and is caught: its
    // COMMIT would be a silent rollback, so the commit fails instead.
    const aborted = dataSource.createQueryRunner();
    const other = dataSource.createQueryRunner();
    try {
      await aborted.startTransaction();
      await publisher.publish(events('aborted', 20), { manager: aborted.manager });
      await expect(aborted.query('SELECT 1 / 0')).rejects.toThrow('division by zero');
      await expect(aborted.commitTransaction()).rejects.toThrow(TransactionAbortedError);
      // Its caller has not rolled back yet: the room is free already, as its rows can never be stored.
      await other.startTransaction();
      await publisher.publish(events('next', 20), { manager: other.manager });
      const rows = (await other.query(`SELECT lease_token FROM ${ns.outboxTable}`)) as Array<{ lease_token: string | null }>;
      expect(rows.filter((row) => row.lease_token !== null)).toHaveLength(20);
    } finally {
      if (other.isTransactionActive) await other.rollbackTransaction();
      if (aborted.isTransactionActive) await aborted.rollbackTransaction();
      await other.release();
      await aborted.release();
    }
  });

  it('leases nothing more to a transaction once it wrote rows for a claim, so none of its later rows overtakes them', async () => {
    const { txHost, publisher } = await start({ batchSize: 2 });
    const events = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => new OrderCreatedIntegrationEvent(`${prefix}-${i}`));
    const leased = await txHost.withTransaction(async () => {
      await publisher.publish(events('fits', 15));
      await publisher.publish(events('too-many', 10)); // 25 > 20: for a claim
      await publisher.publish(events('would-fit', 1)); // 16 <= 20, but after rows waiting for a claim
      const rows = (await txHost.tx.query(`SELECT lease_token FROM ${ns.outboxTable} ORDER BY seq`)) as Array<{ lease_token: string | null }>;
      return rows.map((row) => row.lease_token !== null);
    });
    expect(leased).toEqual([...Array<boolean>(15).fill(true), ...Array<boolean>(11).fill(false)]);
  });

  it('publishes as soon as the broker unblocks the publishing connection, not at its next poll', async () => {
    const probe = await ns.probe('ordering.order-created');
    const { app, txHost, publisher } = await start();
    // What amqplib reports during a memory alarm, and when it clears.
    const recovering = (app.get(RabbitMqPublishingConnection) as unknown as { recovering: EventEmitter }).recovering;
    recovering.emit('blocked', 'memory alarm (test)');
    await txHost.withTransaction(() => publish(publisher, 'during-alarm'));
    await consistently(() => expect(probe.messages).toHaveLength(0), { forMs: 300 });
    recovering.emit('unblocked');
    await eventually(() => expect(orderIds(probe.messages)).toEqual(['during-alarm']), { timeoutMs: 3_000 });
  });

  it('sends what the transaction kept: not what a rolled-back savepoint wrote, and what a released one did', async () => {
    const probe = await ns.probe('ordering.order-created');
    const logger = new CapturingLogger();
    const { txHost, publisher } = await start({}, { logger });
    const nested = (fn: () => Promise<unknown>) => txHost.withTransaction(Propagation.Nested, fn);
    const failing = (fn: () => Promise<unknown>) =>
      nested(async () => {
        await fn();
        throw new Error('roll this savepoint back');
      }).catch(() => undefined);

    await txHost.withTransaction(async () => {
      await publish(publisher, 'outer');
      await failing(() => publish(publisher, 'rolled-back'));
      await nested(() => publish(publisher, 'released'));
      // A sibling savepoint at the same depth rolls back: the released one's row stays.
      await failing(() => publish(publisher, 'sibling-rolled-back'));
      // A released savepoint inside one that rolls back goes with it.
      await failing(() => nested(() => publish(publisher, 'inner-released-outer-rolled-back')));
      await nested(() => nested(() => publish(publisher, 'two-deep-released')));
    });

    const kept = ['outer', 'released', 'two-deep-released'];
    await eventually(() => expect(orderIds(probe.messages).sort()).toEqual([...kept].sort()), { timeoutMs: 3_000 });
    await consistently(() => expect(probe.messages).toHaveLength(kept.length), { forMs: 300 });
    await eventually(async () => expect((await ns.outboxRows()).map((row) => row.status)).toEqual(['sent', 'sent', 'sent']));
    // TypeORM's own savepoints are followed: the rows kept were handed over, none released for a claim.
    expect(logger.text).not.toContain('Released');
  });

  it('never sends a row undone by a ROLLBACK TO SAVEPOINT the application sent as SQL; sends the rows that stayed', async () => {
    const probe = await ns.probe('ordering.order-created');
    const logger = new CapturingLogger();
    const { txHost, publisher } = await start({}, { logger });
    await txHost.withTransaction(async () => {
      await publish(publisher, 'before-the-savepoint');
      // A savepoint of the application's own, which TypeORM does not count.
      await txHost.tx.query('SAVEPOINT app_savepoint');
      await publish(publisher, 'undone');
      await txHost.tx.query('ROLLBACK TO SAVEPOINT app_savepoint');
      await publish(publisher, 'after-the-rollback');
    });
    // In the transaction's order: the row after the rollback, written for a claim, does not overtake.
    const kept = ['before-the-savepoint', 'after-the-rollback'];
    await eventually(() => expect(orderIds(probe.messages)).toEqual(kept), { timeoutMs: 3_000 });
    await consistently(() => expect(probe.messages).toHaveLength(kept.length), { forMs: 300 });
    await eventually(async () => expect((await ns.outboxRows()).map((row) => row.status)).toEqual(['sent', 'sent']));
    // The two rows leased before the application's rollback were released at the commit, not handed over.
    expect(logger.text).toContain('Released 2 handed-over row(s)');
  });

  it('never sends a row undone by a rollback the application sent as SQL behind a comment', async () => {
    const probe = await ns.probe('ordering.order-created');
    const { txHost, publisher } = await start();
    await txHost.withTransaction(async () => {
      await txHost.tx.query('SAVEPOINT app_savepoint');
      await publish(publisher, 'undone');
      await txHost.tx.query('/* from a file */\n-- undo it\nROLLBACK TO SAVEPOINT app_savepoint');
      await publish(publisher, 'kept');
    });
    await eventually(() => expect(orderIds(probe.messages)).toEqual(['kept']), { timeoutMs: 3_000 });
    await consistently(() => expect(probe.messages).toHaveLength(1), { forMs: 300 });
  });

  it('hands nothing over from a transaction that rolls back', async () => {
    const probe = await ns.probe('ordering.order-created');
    const { txHost, publisher } = await start();
    await expect(
      txHost.withTransaction(async () => {
        await publish(publisher, 'never');
        throw new Error('rollback');
      }),
    ).rejects.toThrow('rollback');
    await txHost.withTransaction(() => publish(publisher, 'after'));
    await eventually(() => expect(orderIds(probe.messages)).toEqual(['after']), { timeoutMs: 3_000 });
    await consistently(() => expect(probe.messages).toHaveLength(1), { forMs: 300 });
  });

  it('releases the lease of rows committed after its relay stopped, so another relay sends them at once', async () => {
    const probe = await ns.probe('ordering.order-created');
    const first = await start();
    let written!: () => void;
    const wasWritten = new Promise<void>((resolve) => (written = resolve));
    let commit!: () => void;
    const mayCommit = new Promise<void>((resolve) => (commit = resolve));
    const committed = first.txHost.withTransaction(async () => {
      await publish(first.publisher, 'late');
      written();
      await mayCommit;
    });
    await wasWritten;
    await first.app.get(OutboxRelay).stop();
    commit();
    await committed;
    await eventually(async () => {
      const { rows } = await (await ns.sql()).query(`SELECT lease_token, locked_until FROM ${ns.outboxTable}`);
      expect(rows).toEqual([{ lease_token: null, locked_until: null }]);
    });
    // A relay polling every 100 ms, well inside the 30 s lease the row was written with.
    await start({ pollIntervalMs: 100 });
    await eventually(() => expect(orderIds(probe.messages)).toEqual(['late']), { timeoutMs: 3_000 });
  });

  it('releases the lease of rows committed while the application closes, after the relay stopped', async () => {
    // A transaction still running when app.close() begins (an HTTP request, say), committing after the
    // library's shutdown phase: Nest closes the HTTP server after beforeApplicationShutdown.
    let written!: () => void;
    const wasWritten = new Promise<void>((resolve) => (written = resolve));
    let commit!: () => void;
    const mayCommit = new Promise<void>((resolve) => (commit = resolve));
    let committed: Promise<unknown> | undefined;
    @Injectable()
    class LateRequest implements OnApplicationShutdown {
      async onApplicationShutdown(): Promise<void> {
        commit();
        await committed;
      }
    }
    const { app, txHost, publisher } = await start({}, { providers: [LateRequest] });
    committed = txHost.withTransaction(async () => {
      await publish(publisher, 'committed-while-closing');
      written();
      await mayCommit;
    });
    await wasWritten;
    await apps.splice(apps.indexOf(app), 1)[0]!.close();
    await committed;
    const { rows } = await (await ns.sql()).query(`SELECT status, lease_token, locked_until FROM ${ns.outboxTable}`);
    expect(rows).toEqual([{ status: 'pending', lease_token: null, locked_until: null }]);
  });

  it('gives up the lease of rows handed over while it cannot publish, so that any instance claims them at once', async () => {
    const probe = await ns.probe('ordering.order-created');
    // A lease of a minute: the row is free long before it would run out.
    const { app, txHost, publisher } = await start({ leaseMs: 60_000 });
    const publishing = app.get(RabbitMqPublishingConnection);
    try {
      await txHost.withTransaction(async () => {
        await publish(publisher, 'handed-over-while-blocked');
        // Written leased to this relay; before the commit, the broker starts blocking its publishing
        // connection (a memory or disk alarm, as RabbitMQ reports it).
        Object.defineProperty(publishing, 'isBlocked', { configurable: true, get: () => true });
      });
      await eventually(async () => {
        const { rows } = await (await ns.sql()).query(`SELECT status, lease_token, locked_until FROM ${ns.outboxTable}`);
        expect(rows).toEqual([{ status: 'pending', lease_token: null, locked_until: null }]);
      });
      expect(probe.messages).toHaveLength(0);
    } finally {
      delete (publishing as { isBlocked?: boolean }).isBlocked;
    }
    // Unblocked, the relay (asked to look) claims it.
    app.get(OutboxRelay).wake();
    await eventually(() => expect(orderIds(probe.messages)).toEqual(['handed-over-while-blocked']), { timeoutMs: 3_000 });
  });

  it('measures a handed-over row\'s lease on a monotonic clock: a wall clock stepped back does not make it look fresh', async () => {
    const probe = await ns.probe('ordering.order-created');
    const logger = new CapturingLogger();
    const { txHost, publisher } = await start({ leaseMs: 1_000, confirmTimeoutMs: 500 }, { logger });
    const wallClock = Date.now.bind(Date);
    const steppedBack = jest.spyOn(Date, 'now');
    try {
      await txHost.withTransaction(async () => {
        await publish(publisher, 'clock-stepped-back');
        await new Promise((resolve) => setTimeout(resolve, 700));
        // NTP steps the clock back 10 s before the commit: by the wall clock, the lease just began.
        steppedBack.mockImplementation(() => wallClock() - 10_000);
      });
      await eventually(() => expect(logger.text).toContain('Released 1 handed-over row(s) whose lease was too far gone'), { timeoutMs: 3_000 });
    } finally {
      steppedBack.mockRestore();
    }
    await eventually(() => expect(orderIds(probe.messages)).toEqual(['clock-stepped-back']), { timeoutMs: 3_000 });
  });

  it('sends a row whose lease was too far gone at its commit through a claim, once', async () => {
    const probe = await ns.probe('ordering.order-created');
    const logger = new CapturingLogger();
    const { txHost, publisher } = await start({ leaseMs: 1_000, confirmTimeoutMs: 500 }, { logger });
    await txHost.withTransaction(async () => {
      await publish(publisher, 'slow-commit');
      // The transaction stays open past half the lease (the case a long commit makes).
      await new Promise((resolve) => setTimeout(resolve, 700));
    });
    await eventually(() => expect(orderIds(probe.messages)).toEqual(['slow-commit']), { timeoutMs: 3_000 });
    await consistently(() => expect(probe.messages).toHaveLength(1), { forMs: 1_500 });
    expect(logger.text).toContain('Released 1 handed-over row(s) whose lease was too far gone');
    expect((await ns.outboxRows()).map((row) => row.status)).toEqual(['sent']);
  });

  it('leaves a handed-over row room on its lease for a publish of confirmTimeoutMs and its mark, not just half the lease', async () => {
    const probe = await ns.probe('ordering.order-created');
    const logger = new CapturingLogger();
    // A lease of 1 s, a confirm deadline of 500 ms: a row 350 ms into its lease (under half) could be
    // confirmed at 850 ms and marked after its lease ran out, by when another relay may have sent it.
    const { txHost, publisher } = await start({ leaseMs: 1_000, confirmTimeoutMs: 500 }, { logger });
    await txHost.withTransaction(async () => {
      await publish(publisher, 'short-of-room');
      await new Promise((resolve) => setTimeout(resolve, 350));
    });
    await eventually(() => expect(orderIds(probe.messages)).toEqual(['short-of-room']), { timeoutMs: 3_000 });
    await consistently(() => expect(probe.messages).toHaveLength(1), { forMs: 1_000 });
    expect(logger.text).toContain('Released 1 handed-over row(s) whose lease was too far gone');
    expect((await ns.outboxRows()).map((row) => row.status)).toEqual(['sent']);
  });
});
