import type { TestingModule } from '@nestjs/testing';
import { TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { IntegrationEvent, IntegrationEventPublisher, IntegrationEventsHealth, OutboxRelay, TransportNotReadyError } from 'nestjs-integration-events';
import type { ConfirmChannel } from 'amqplib';
import { RabbitMqPublisher } from '../libs/integration-events/src/transport/rabbitmq/rabbitmq.publisher';
import { OutboxDatabase } from '../libs/integration-events/src/outbox/outbox-database';
import { TransportHost } from '../libs/integration-events/src/transport/transport-host';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

@IntegrationEvent({ name: 'nobody.listens', version: 1 })
class NobodyListensEvent {
  constructor(readonly n: number) {}
}

/** Behaviour 3: the relay. */
describe('outbox relay', () => {
  let ns: TestNamespace;
  const apps: TestingModule[] = [];

  beforeEach(async () => {
    ns = await TestNamespace.create();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await ns.cleanup();
  });

  const start = async (relay: Record<string, number> = {}) => {
    const app = await startTestApp(ns, { options: { relay, consumer: { enabled: false } } });
    apps.push(app);
    return app;
  };

  /**
   * A trigger that makes every statement marking a matching row sent fail (`matching`: a condition on
   * NEW), and counts those statements in a sequence, which no rollback undoes. Dropped with `DROP TRIGGER
   * refuse_mark`; the schema's cleanup removes the rest.
   */
  const refuseMarks = async (matching: string) => {
    const db = await ns.sql();
    const attempts = `"${ns.schema}".mark_attempts`;
    await db.query(`CREATE SEQUENCE ${attempts}`);
    await db.query(
      `CREATE FUNCTION "${ns.schema}".refuse_mark() RETURNS trigger LANGUAGE plpgsql AS ` +
        `$$ BEGIN PERFORM nextval('${attempts}'); RAISE EXCEPTION 'mark refused by the test'; END $$`,
    );
    await db.query(
      `CREATE TRIGGER refuse_mark BEFORE UPDATE ON ${ns.outboxTable} FOR EACH ROW ` +
        `WHEN (NEW.status = 'sent' AND ${matching}) EXECUTE FUNCTION "${ns.schema}".refuse_mark()`,
    );
    const markAttempts = async () => Number((await db.query(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM ${attempts}`)).rows[0].n);
    return { db, markAttempts };
  };

  /** Makes every claim of the app's relay fail with `message`; returns how many were tried so far. */
  const failClaims = (app: TestingModule, message = 'canceling statement due to statement timeout (test)'): (() => number) => {
    let claims = 0;
    jest.spyOn(app.get(OutboxDatabase).store, 'claim').mockImplementation(async () => {
      claims++;
      throw new Error(message);
    });
    return () => claims;
  };

  it('marks a batch\'s confirmed rows before releasing its unsent ones, whose release may wait out its retries', async () => {
    const probe = await ns.probe('ordering.order-created');
    const app = await start({ pollIntervalMs: 3_600_000 });
    const transport = app.get(TransportHost).transport;
    const publish = transport.publish.bind(transport);
    // The broker confirms the first row; the second is left unsent, as when the batch's time runs out first.
    jest.spyOn(transport, 'publish').mockImplementationOnce(async (messages) => [
      ...(await publish(messages.slice(0, 1))),
      ...messages.slice(1).map(() => ({ status: 'unsent' as const, reason: 'the batch ran out of time (test)' })),
    ]);
    // The database refuses the first two releases (away for a moment): the release waits out 600 ms of retries.
    const store = app.get(OutboxDatabase).store;
    const steps: string[] = [];
    const release = store.release.bind(store);
    let releases = 0;
    jest.spyOn(store, 'release').mockImplementation(async (ids, token) => {
      if (++releases <= 2) {
        steps.push('release refused');
        throw new Error('database away (test)');
      }
      await release(ids, token);
      steps.push('released');
    });
    const markSent = store.markSent.bind(store);
    jest.spyOn(store, 'markSent').mockImplementation(async (ids, token) => {
      await markSent(ids, token);
      steps.push(`marked ${ids.length}`);
    });
    const [confirmed, unsent] = await app
      .get(IntegrationEventPublisher)
      .publish([new OrderCreatedIntegrationEvent('confirmed'), new OrderCreatedIntegrationEvent('unsent')], { standalone: true });
    await eventually(() => expect(steps).toContain('released'));
    expect(steps.indexOf('marked 1')).toBeGreaterThanOrEqual(0);
    expect(steps.indexOf('marked 1')).toBeLessThan(steps.indexOf('released'));
    // The unsent row goes out through the claim its release asks for.
    await eventually(async () =>
      expect(Object.fromEntries((await ns.outboxRows()).map((row) => [row.id, row.status]))).toEqual({ [confirmed!]: 'sent', [unsent!]: 'sent' }),
    );
    expect(probe.messages.map((m) => m.properties.messageId)).toEqual([confirmed, unsent]);
  });

  it('waits out its backoff after a failed round, though commits keep waking it: the failing claim is not run at their rate', async () => {
    const app = await start({ pollIntervalMs: 1_000 });
    const claims = failClaims(app, 'permission denied for the outbox (test)');
    const relay = app.get(OutboxRelay);
    relay.wake();
    await eventually(() => expect(claims()).toBe(1));
    // The first pause is 500-1,000 ms (half to all of pollIntervalMs); rings every 10 ms for 300 ms of it.
    const ringing = setInterval(() => relay.wake(), 10);
    try {
      await consistently(() => expect(claims()).toBe(1), { forMs: 300 });
    } finally {
      clearInterval(ringing);
    }
    // After the pause the claim is tried again.
    await eventually(() => expect(claims()).toBe(2), { timeoutMs: 3_000 });
  });

  it('sends rows handed over at commits during its backoff, every batch of them: only the claim that failed waits it out', async () => {
    const probe = await ns.probe('ordering.order-created');
    const app = await start({ pollIntervalMs: 5_000, batchSize: 2 });
    const claims = failClaims(app);
    app.get(OutboxRelay).wake();
    await eventually(() => expect(claims()).toBe(1));
    // The pause is 2.5-5 s (half to all of pollIntervalMs); five rows handed over at one commit, three
    // batches of two, go at once.
    const events = [1, 2, 3, 4, 5].map((n) => new OrderCreatedIntegrationEvent(`during-the-pause-${n}`));
    await app.get(TransactionHost).withTransaction(() => app.get(IntegrationEventPublisher).publish(events));
    await eventually(() => expect(probe.messages).toHaveLength(5), { timeoutMs: 1_500 });
    await eventually(async () => expect((await ns.outboxRows()).map((row) => row.status)).toEqual(['sent', 'sent', 'sent', 'sent', 'sent']), { timeoutMs: 1_500 });
    expect(claims()).toBe(1);
  });

  it('claims again when its backoff ends, though rows handed over at commits keep coming all through it', async () => {
    const app = await start({ pollIntervalMs: 1_000, batchSize: 2 });
    const claims = failClaims(app);
    const transport = app.get(TransportHost).transport;
    const publish = transport.publish.bind(transport);
    // A slow broker: each send of two rows takes 20 ms, so commits one after another keep the handoff
    // from ever emptying.
    jest.spyOn(transport, 'publish').mockImplementation(async (messages) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return publish(messages);
    });
    app.get(OutboxRelay).wake();
    await eventually(() => expect(claims()).toBe(1));
    let committing = true;
    const load = (async () => {
      for (let n = 0; committing; n++) {
        await app.get(TransactionHost).withTransaction(() => app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent(`steady-${n}`)));
      }
    })();
    try {
      // The pause is 500-1,000 ms: then the claim runs again (and fails again here), load or not.
      await eventually(() => expect(claims()).toBe(2), { timeoutMs: 3_000 });
    } finally {
      committing = false;
      await load;
    }
  });

  /** Each outbox row's id → whether a lease holds it. */
  const leased = async () =>
    Object.fromEntries(
      (await (await ns.sql()).query(`SELECT id, lease_token IS NOT NULL AS leased FROM ${ns.outboxTable} ORDER BY seq`)).rows.map(
        (row: { id: string; leased: boolean }) => [row.id, row.leased],
      ),
    );

  it('stops sending handed-over rows for the rest of its backoff once such a send has failed, and gives up the lease of the others', async () => {
    const app = await start({ pollIntervalMs: 10_000, batchSize: 2 });
    const claims = failClaims(app);
    const transport = app.get(TransportHost).transport;
    let sends = 0;
    jest.spyOn(transport, 'publish').mockImplementation(async () => {
      sends++;
      throw new Error('the broker refused the channel (test)');
    });
    app.get(OutboxRelay).wake();
    await eventually(() => expect(claims()).toBe(1));
    // The pause is 5-10 s; five rows handed over at one commit, three batches of two. The first batch's
    // send fails: the other two are not sent during the pause (they would fail one after the other).
    const events = [1, 2, 3, 4, 5].map((n) => new OrderCreatedIntegrationEvent(`failing-during-the-pause-${n}`));
    const ids = await app.get(TransactionHost).withTransaction(() => app.get(IntegrationEventPublisher).publish(events));
    await eventually(() => expect(sends).toBe(1), { timeoutMs: 1_500 });
    await consistently(() => expect(sends).toBe(1), { forMs: 1_000 });
    expect(claims()).toBe(1);
    // The batch whose send failed stays leased (it may have reached the broker); the other rows are free
    // for any relay that can publish, instead of held here until the pause ends.
    expect(await leased()).toEqual({ [ids[0]!]: true, [ids[1]!]: true, [ids[2]!]: false, [ids[3]!]: false, [ids[4]!]: false });
  });

  it('gives up the lease of rows handed over during its backoff while its broker connection is down', async () => {
    const app = await start({ pollIntervalMs: 10_000 });
    const claims = failClaims(app);
    app.get(OutboxRelay).wake();
    await eventually(() => expect(claims()).toBe(1));
    // The pause is 5-10 s. The row is leased at its insert, and the connection drops before its commit.
    const transport = app.get(TransportHost).transport;
    let connected = true;
    jest.spyOn(transport, 'canPublish', 'get').mockImplementation(() => connected);
    const txHost = app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
    const [id] = await txHost.withTransaction(async () => {
      const written = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('committed-while-disconnected'));
      const [{ leased: leasedAtInsert }] = await txHost.tx.query(`SELECT lease_token IS NOT NULL AS leased FROM ${ns.outboxTable}`);
      expect(leasedAtInsert).toBe(true);
      connected = false;
      return written;
    });
    await eventually(async () => expect(await leased()).toEqual({ [id!]: false }), { timeoutMs: 1_500 });
    expect(claims()).toBe(1);
  });

  /** A queue bound to the order events that refuses every message: RabbitMQ nacks what is routed to it. */
  const bindRefusingQueue = async () => {
    const channel = await (await ns.amqp()).createChannel();
    await channel.assertExchange(ns.exchange, 'topic', { durable: true });
    const queue = ns.trackQueue(`${ns.serviceName}.full`);
    await channel.assertQueue(queue, { arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
    await channel.bindQueue(queue, ns.exchange, 'ordering.order-created');
    return { channel, queue };
  };

  it('is woken by the commit itself, without waiting for its poll', async () => {
    const probe = await ns.probe('ordering.order-created');
    // A row already due when the relay starts: its first round's claim publishes it. Once it has arrived,
    // that claim has run and the next poll is an hour away: only the commits' wake-ups can deliver in time.
    await ns.insertOutboxRows(1);
    const app = await start({ pollIntervalMs: 3_600_000 });
    await eventually(() => expect(probe.messages).toHaveLength(1));
    const txHost = app.get(TransactionHost);
    for (let i = 0; i < 3; i++) {
      const [id] = await txHost.withTransaction(() => app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent(`wake-${i}`)));
      await eventually(() => expect(probe.messages).toHaveLength(i + 2), { timeoutMs: 3_000 });
      expect(probe.messages[i + 1]!.properties.messageId).toBe(id);
    }
  });

  it('picks up rows committed by other processes on its poll', async () => {
    const probe = await ns.probe('ordering.order-created');
    await start({ pollIntervalMs: 100 });
    await ns.insertOutboxRows(25);
    await eventually(() => expect(probe.messages).toHaveLength(25));
    await eventually(async () => expect((await ns.outboxRows()).every((row) => row.status === 'sent')).toBe(true));
  });

  it('never publishes a row twice when two relays drain one outbox at once', async () => {
    const probe = await ns.probe('ordering.order-created');
    await ns.insertOutboxRows(3_000);
    // Small batches so the two relays' claims interleave many times.
    await Promise.all([start({ batchSize: 25, pollIntervalMs: 50 }), start({ batchSize: 25, pollIntervalMs: 50 })]);
    await eventually(async () => expect((await ns.outboxRows()).filter((row) => row.status !== 'sent')).toHaveLength(0), {
      timeoutMs: 30_000,
    });
    await eventually(() => expect(probe.messages.length).toBeGreaterThanOrEqual(3_000));
    // A duplicate may still be on its way (published by one relay after the other marked the row): give it time to come.
    await consistently(() => expect(probe.messages).toHaveLength(3_000), { forMs: 500 });
    const ids = probe.messages.map((message) => message.properties.messageId as string);
    expect(new Set(ids).size).toBe(3_000);
  });

  it('has every published row marked sent when stop() returns, though marks run while the next batch goes out', async () => {
    const probe = await ns.probe('ordering.order-created');
    await ns.insertOutboxRows(2_000);
    const app = await start({ batchSize: 50, pollIntervalMs: 50 });
    await eventually(() => expect(probe.messages.length).toBeGreaterThanOrEqual(200));

    // Hold the relay's next claim and marks on a table lock, ask it to stop, then let them through: the
    // batch it claims then is published, and stop() must wait for that batch's marks.
    const locker = await ns.sql();
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE "${ns.schema}".integration_events_outbox IN EXCLUSIVE MODE`);
    const stopped = app.get(OutboxRelay).stop();
    const waiting = async () =>
      (await locker.query(`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = '"${ns.schema}".integration_events_outbox'::regclass`))
        .rows[0].n as number;
    await eventually(async () => expect(await waiting()).toBeGreaterThan(0));
    await locker.query('COMMIT');
    await stopped;

    const rows = await ns.outboxRows();
    const sent = rows.filter((row) => row.status === 'sent').map((row) => row.id);
    // The messages still on their way to the probe arrive; each matches a row marked when stop() returned.
    await eventually(() => expect(probe.messages.length).toBe(sent.length));
    expect(new Set(probe.messages.map((message) => message.properties.messageId as string))).toEqual(new Set(sent));
  });

  it('marks rows committed one after another by shared statements, and every one of them sent', async () => {
    const probe = await ns.probe('ordering.order-created');
    const app = await start({ pollIntervalMs: 3_600_000 });
    const publisher = app.get(IntegrationEventPublisher);
    // Each in a transaction of its own, committed once the one before has reached the broker's queue:
    // each is published as a batch of its own, which used to be marked by a statement of its own.
    for (let i = 0; i < 20; i++) {
      await publisher.publish(new OrderCreatedIntegrationEvent(`one-by-one-${i}`), { standalone: true });
      await eventually(() => expect(probe.messages).toHaveLength(i + 1), { intervalMs: 2 });
    }
    await eventually(async () => expect((await ns.outboxRows()).filter((row) => row.status !== 'sent')).toHaveLength(0));
    // sent_at is now() of the statement that marked the row: rows confirmed within MARK_LINGER_MS of
    // each other share it. Only a gap of over 50 ms between every two of them could give 20 statements.
    const db = await ns.sql();
    const { rows } = await db.query(`SELECT count(DISTINCT sent_at)::int AS marks FROM ${ns.outboxTable}`);
    expect(rows[0].marks).toBeGreaterThanOrEqual(1);
    expect(rows[0].marks).toBeLessThan(20);
  });

  it('marks a confirmed row still waiting for rows to share its mark before stop() returns', async () => {
    const probe = await ns.probe('ordering.order-created');
    const app = await start({ pollIntervalMs: 3_600_000 });
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('last-one'), { standalone: true });
    await eventually(() => expect(probe.messages).toHaveLength(1));
    // The broker has it, so its confirm is in or on its way; the mark may still be waiting: stop now.
    await app.get(OutboxRelay).stop();
    expect((await ns.outboxRows()).map((row) => [row.id, row.status])).toEqual([[id, 'sent']]);
  });

  it('runs again when start() comes while stop() is marking its last batch', async () => {
    const probe = await ns.probe('ordering.order-created');
    // Marks wait for an advisory lock the test holds (a key of this namespace's own).
    const db = await ns.sql();
    const key = `hashtext('${ns.schema}')`;
    await db.query(
      `CREATE FUNCTION "${ns.schema}".hold_mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock(${key}); RETURN NEW; END $$`,
    );
    await db.query(`CREATE TRIGGER hold_mark BEFORE UPDATE ON ${ns.outboxTable} FOR EACH ROW WHEN (NEW.status = 'sent') EXECUTE FUNCTION "${ns.schema}".hold_mark()`);
    await db.query(`SELECT pg_advisory_lock(${key})`);
    try {
      const app = await start({ pollIntervalMs: 3_600_000 });
      const relay = app.get(OutboxRelay);
      const txHost = app.get(TransactionHost);
      const publisher = app.get(IntegrationEventPublisher);
      // The relay's first publish waits until the test lets it go.
      const transport = app.get(TransportHost).transport;
      const publish = transport.publish.bind(transport);
      let publishing!: () => void;
      const inPublish = new Promise<void>((resolve) => (publishing = resolve));
      let letGo!: () => void;
      const gate = new Promise<void>((resolve) => (letGo = resolve));
      jest.spyOn(transport, 'publish').mockImplementationOnce(async (messages) => {
        publishing();
        await gate;
        return publish(messages);
      });
      await txHost.withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('first')));
      await inPublish;
      // A second row is handed over meanwhile; the stop comes while the first batch is out. Once it is
      // confirmed the relay leaves its rounds (its stop is pending, a row waits) and marks the batch:
      // that mark waits for the lock, in the stop's last phase.
      await txHost.withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('second')));
      const stopping = relay.stop();
      letGo();
      await eventually(async () =>
        expect(
          (await db.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE%' AND query LIKE $1", [`%${ns.schema}%`]))
            .rows[0].n,
        ).toBe(1),
      );
      relay.start();
      await db.query(`SELECT pg_advisory_unlock(${key})`);
      await stopping;
      // Running again: it claims the second row, which the stop gave back, and sends it.
      await eventually(() => expect(relay.isRunning).toBe(true));
      await eventually(() => expect(probe.messages.map((m) => (JSON.parse(m.content.toString()) as { orderId: string }).orderId)).toEqual(['first', 'second']));
    } finally {
      await db.query('SELECT pg_advisory_unlock_all()');
      await db.query(`DROP TRIGGER IF EXISTS hold_mark ON ${ns.outboxTable}`);
    }
  });

  it('marks rows whose mark failed once the database lets it, instead of leaving them to go out again after their lease', async () => {
    const probe = await ns.probe('ordering.order-created');
    // Every statement that marks a row sent fails, until the test drops the trigger.
    const { db, markAttempts } = await refuseMarks('true');
    // A lease far longer than the test: a row left to it could not go out again, nor be marked, in time.
    const app = await start({ pollIntervalMs: 100, leaseMs: 600_000 });
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('mark-refused'), { standalone: true });
    await eventually(() => expect(probe.messages).toHaveLength(1));

    // One row, so one statement per try: the first mark is tried 4 times (3 retries) before the round
    // gives up; a fifth attempt is the row's mark tried again in a later round.
    await eventually(async () => expect(await markAttempts()).toBeGreaterThanOrEqual(5), { timeoutMs: 15_000 });
    expect((await ns.outboxRows()).map((row) => row.status)).toEqual(['pending']);
    await db.query(`DROP TRIGGER refuse_mark ON ${ns.outboxTable}`);

    await eventually(async () => expect((await ns.outboxRows()).map((row) => [row.id, row.status])).toEqual([[id, 'sent']]), { timeoutMs: 15_000 });
    // Marked, not sent again: the message reached the queue once.
    expect(probe.messages.map((message) => message.properties.messageId as string)).toEqual([id]);
  });

  it('keeps publishing, and marking, the rows that come after one whose mark keeps failing', async () => {
    const probe = await ns.probe('ordering.order-created');
    // Only the mark of the row carrying "refuse-my-mark" fails.
    const { db, markAttempts } = await refuseMarks("NEW.payload LIKE '%refuse-my-mark%'");
    const app = await start({ pollIntervalMs: 100, leaseMs: 600_000 });
    const publisher = app.get(IntegrationEventPublisher);
    const [refused] = await publisher.publish(new OrderCreatedIntegrationEvent('refuse-my-mark'), { standalone: true });
    // Its first mark and the retries of that round (4 tries) have failed: it is now tried again with later marks.
    await eventually(async () => expect(await markAttempts()).toBeGreaterThanOrEqual(4), { timeoutMs: 15_000 });

    const others: string[] = [];
    for (let i = 0; i < 5; i++) {
      others.push(...(await publisher.publish(new OrderCreatedIntegrationEvent(`after-refused-${i}`), { standalone: true })));
      await eventually(() => expect(probe.messages).toHaveLength(i + 2), { timeoutMs: 5_000 });
    }
    await eventually(async () => {
      const rows = await ns.outboxRows();
      expect(rows.filter((row) => others.includes(row.id)).map((row) => row.status)).toEqual(['sent', 'sent', 'sent', 'sent', 'sent']);
      expect(rows.find((row) => row.id === refused)?.status).toBe('pending');
    });
    // Tried again meanwhile, and marked once the database lets it.
    expect(await markAttempts()).toBeGreaterThan(4);
    await db.query(`DROP TRIGGER refuse_mark ON ${ns.outboxTable}`);
    await eventually(async () => expect((await ns.outboxRows()).find((row) => row.id === refused)?.status).toBe('sent'), { timeoutMs: 15_000 });
    expect(probe.messages.map((message) => message.properties.messageId as string).sort()).toEqual([refused!, ...others].sort());
  });

  it('flags an unroutable message (returned by the broker) instead of counting it as sent', async () => {
    const app = await start();
    const [id] = await app.get(IntegrationEventPublisher).publish(new NobodyListensEvent(1), { standalone: true });
    await eventually(async () => {
      const row = (await ns.outboxRows()).find((r) => r.id === id);
      expect(row?.status).toBe('unroutable');
      expect(row?.last_error).toContain('NO_ROUTE');
      expect(row?.last_error).toContain('nobody.listens');
    });
  });

  it('sends a row its channel refused as closing on a fresh channel, once, with no attempt counted', async () => {
    const probe = await ns.probe('ordering.order-created');
    const app = await start({ retryInitialDelayMs: 60_000, retryMaxDelayMs: 60_000 });
    // amqplib refuses a publish on a channel it is closing (after a channel error, say) with an
    // IllegalOperationError, before sending anything. That channel keeps refusing until the broker has
    // answered its close: the relay must neither spin on it nor count an attempt.
    const managed = (app.get(RabbitMqPublisher) as unknown as { channel: { current: ConfirmChannel | undefined } }).channel;
    await eventually(() => expect(managed.current).toBeDefined());
    const closing = managed.current!;
    let refused = 0;
    closing.publish = () => {
      refused++;
      throw Object.assign(new Error('Channel closing'), { name: 'IllegalOperationError' });
    };
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('on-a-closing-channel'), { standalone: true });
    await eventually(() => expect(probe.messages.map((m) => m.properties.messageId)).toEqual([id]), { timeoutMs: 5_000 });
    expect(managed.current).not.toBe(closing);
    expect(refused).toBe(1);
    await eventually(async () => expect((await ns.outboxRows()).map((row) => [row.status, row.attempts, row.last_error])).toEqual([['sent', 0, null]]));
  });

  it('tries again to release rows a dropped connection kept it from publishing, instead of leaving them to their lease', async () => {
    const probe = await ns.probe('ordering.order-created');
    // The first statement that gives a row's lease up untouched (no attempt counted) fails; every such
    // statement is counted in a sequence, which no rollback undoes.
    const db = await ns.sql();
    const releases = `"${ns.schema}".release_attempts`;
    await db.query(`CREATE SEQUENCE ${releases}`);
    await db.query(
      `CREATE FUNCTION "${ns.schema}".refuse_first_release() RETURNS trigger LANGUAGE plpgsql AS ` +
        `$$ BEGIN IF nextval('${releases}') = 1 THEN RAISE EXCEPTION 'release refused by the test'; END IF; RETURN NEW; END $$`,
    );
    await db.query(
      `CREATE TRIGGER refuse_first_release BEFORE UPDATE ON ${ns.outboxTable} FOR EACH ROW ` +
        "WHEN (OLD.lease_token IS NOT NULL AND NEW.lease_token IS NULL AND NEW.status = 'pending' AND NEW.attempts = OLD.attempts) " +
        `EXECUTE FUNCTION "${ns.schema}".refuse_first_release()`,
    );
    // A lease far longer than the test, and no poll within it: the row goes out within the deadline only
    // if its lease was given up and a claim asked for.
    const app = await start({ pollIntervalMs: 3_600_000, leaseMs: 600_000 });
    const transport = app.get(TransportHost).transport;
    const publish = transport.publish.bind(transport);
    let dropped = 0;
    transport.publish = async (messages) => {
      // The connection went between the relay's check and its publish: nothing was sent.
      if (dropped++ === 0) throw new TransportNotReadyError();
      return publish(messages);
    };

    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('after-a-drop'), { standalone: true });
    await eventually(() => expect(probe.messages.map((m) => m.properties.messageId)).toEqual([id]), { timeoutMs: 10_000 });
    await eventually(async () => expect((await ns.outboxRows()).map((row) => [row.status, row.attempts, row.last_error])).toEqual([['sent', 0, null]]));
    // Refused once, then given up on the second try.
    expect(Number((await db.query(`SELECT last_value FROM ${releases}`)).rows[0].last_value)).toBe(2);
    expect(dropped).toBe(2);
  });

  it('keeps a row the broker nacked, records the failure, and sends it on a later try', async () => {
    const { channel, queue } = await bindRefusingQueue();

    const app = await start({ retryInitialDelayMs: 1_500, retryMaxDelayMs: 1_500 });
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('nacked'), {
      standalone: true,
    });
    await eventually(async () => {
      const row = (await ns.outboxRows()).find((r) => r.id === id);
      expect(row?.status).toBe('pending');
      expect(row?.attempts).toBeGreaterThanOrEqual(1);
      expect(row?.last_error).toBeTruthy();
    });

    // Make room: the next attempt is confirmed and the row marked sent.
    await channel.deleteQueue(queue);
    await channel.assertQueue(queue);
    await channel.bindQueue(queue, ns.exchange, 'ordering.order-created');
    await eventually(async () => expect((await ns.outboxRows()).find((r) => r.id === id)?.status).toBe('sent'), {
      timeoutMs: 15_000,
    });
    const message = await eventually(async () => {
      const got = await channel.get(queue, { noAck: true });
      if (!got) throw new Error('not there yet');
      return got;
    });
    expect(message.properties.messageId).toBe(id);
    await channel.close();
  });

  it('reports a row the broker keeps refusing as unhealthy once its failures span maxLagMs, though its wait never grows', async () => {
    await (await bindRefusingQueue()).channel.close();

    const app = await start({ pollIntervalMs: 20, retryInitialDelayMs: 20, retryMaxDelayMs: 40 });
    const health = app.get(IntegrationEventsHealth);
    await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('refused'), { standalone: true });
    // 1 s of failures: 52 attempts, the waits between them at least 10 ms, then 20 ms (half of each step).
    const report = await eventually(
      async () => {
        const checked = await health.check({ maxLagMs: 1_000 });
        expect(checked.healthy).toBe(false);
        return checked;
      },
      { timeoutMs: 20_000 },
    );
    expect(report.outbox.failing).toBe(1);
    expect(report.problems).toEqual([expect.stringMatching(/^1 outbox row\(s\) failed to publish 52 times or more, for at least 1 s \(last error: message nacked\)$/)]);
    // Due again after each short delay, the row never waited long: the backlog's age alone missed it.
    expect(report.outbox.lagMs).toBeLessThan(1_000);
    const attempts = (await ns.outboxRows())[0]!.attempts;
    expect(attempts).toBeGreaterThanOrEqual(52);

    // A deployment without the relay (consumers only) reports the figure, and is not down for it.
    const consumersOnly = await startTestApp(ns, { options: { relay: { enabled: false }, consumer: { enabled: false } } });
    apps.push(consumersOnly);
    const elsewhere = await consumersOnly.get(IntegrationEventsHealth).check({ maxLagMs: 1_000 });
    expect(elsewhere).toMatchObject({ healthy: true, problems: [], outbox: { failing: 1 } });
  });
});
