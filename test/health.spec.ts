import type { TestingModule } from '@nestjs/testing';
import {
  IntegrationEventHandler,
  IntegrationEventPublisher,
  IntegrationEventsHealth,
  OutboxRelay,
  type IIntegrationEventHandler,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { CapturingLogger } from './support/capturing-logger';
import { eventually } from './support/eventually';
import { rabbitMqUrlVia, TEST_RABBITMQ_ADDRESS } from './support/services';
import { TcpProxy } from './support/tcp-proxy';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** A second handler of the same event (its own queue): one of two handlers can lose its consumer. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class OtherOrderHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

/**
 * The health check's problems other than the outbox's failing rows and a `maxLagMs` given by the
 * caller (README, "Health"): the broker connection, the relay, a handler without a consumer, and the
 * default lag limit of 60 s.
 */
describe('health check problems', () => {
  let ns: TestNamespace;
  const apps: TestingModule[] = [];
  const proxies: TcpProxy[] = [];

  beforeEach(async () => {
    ns = await TestNamespace.create();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const proxy of proxies.splice(0)) await proxy.stop();
    await ns.cleanup();
  });

  const start = async (options: Parameters<typeof startTestApp>[1] = {}) => {
    const app = await startTestApp(ns, options);
    apps.push(app);
    return app;
  };
  const check = (app: TestingModule) => app.get(IntegrationEventsHealth).check();
  const publish = async (app: TestingModule, orderId: string) =>
    (await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent(orderId), { standalone: true }))[0]!;

  it('reports the broker not connected while the connection is down, and healthy again once it is back', async () => {
    const proxy = await TcpProxy.create(TEST_RABBITMQ_ADDRESS);
    proxies.push(proxy);
    await proxy.accept();
    const url = rabbitMqUrlVia(proxy.port);
    const app = await start({
      providers: [OrderCreatedRecorder],
      options: { rabbitmq: { url, reconnectInitialDelayMs: 100, reconnectMaxDelayMs: 500 } },
    });
    // The transport as the report names it: the URL with its password masked.
    const redacted = new URL(url);
    if (redacted.password) redacted.password = '***';
    const transport = `RabbitMQ at ${redacted.toString()}`;
    const healthy = {
      healthy: true,
      problems: [],
      broker: { connected: true, transport },
      relay: { enabled: true, running: true },
      consumers: { handlers: 1, attached: 1 },
      outbox: { backlog: 0, lagMs: 0, maxLagMs: 60_000, failing: 0 },
    };
    await eventually(async () => expect(await check(app)).toEqual(healthy));

    // The broker goes away (connections cut, new ones refused): the connection is down, and with it the
    // handler's consumer.
    await proxy.refuse();
    proxy.cut();
    await eventually(async () =>
      expect(await check(app)).toMatchObject({
        healthy: false,
        problems: [`not connected to ${transport}`, '1 of 1 handler(s) have no consumer attached'],
        broker: { connected: false, transport },
        relay: { enabled: true, running: true },
        consumers: { handlers: 1, attached: 0 },
      }),
    );
    // publish() goes on working meanwhile: the row waits in the outbox.
    const id = await publish(app, 'during-outage');
    const down = await check(app);
    expect(down.outbox).toMatchObject({ backlog: 1, maxLagMs: 60_000, failing: 0 });
    expect(down.problems).toEqual([`not connected to ${transport}`, '1 of 1 handler(s) have no consumer attached']);

    await proxy.accept();
    await eventually(async () => expect(await check(app)).toEqual(healthy), { timeoutMs: 15_000 });
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toContain(id));
  });

  it('reports a stopped relay as not running, and healthy again once it runs', async () => {
    const app = await start({ providers: [OrderCreatedRecorder] });
    await eventually(async () => expect(await check(app)).toMatchObject({ healthy: true, relay: { enabled: true, running: true } }));

    await app.get(OutboxRelay).stop();
    const id = await publish(app, 'relay-stopped');
    const report = await check(app);
    expect(report).toMatchObject({
      healthy: false,
      problems: ['the relay is not running'],
      broker: { connected: true },
      relay: { enabled: true, running: false },
      consumers: { handlers: 1, attached: 1 },
      // The row waits for a relay, far less than the lag limit: the relay is the one problem.
      outbox: { backlog: 1, maxLagMs: 60_000, failing: 0 },
    });
    expect(report.outbox.lagMs).toBeLessThan(60_000);
    expect((await ns.outboxRows()).map((row) => [row.id, row.status])).toEqual([[id, 'pending']]);

    app.get(OutboxRelay).start();
    await eventually(async () =>
      expect(await check(app)).toMatchObject({
        healthy: true,
        problems: [],
        relay: { enabled: true, running: true },
        outbox: { backlog: 0, lagMs: 0 },
      }),
    );
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([id]));
  });

  it('reports a handler whose consumer cannot attach, while the broker stays connected, and healthy again once it attaches', async () => {
    const logger = new CapturingLogger();
    const app = await start({ providers: [OrderCreatedRecorder, OtherOrderHandler], logger });
    await eventually(async () =>
      expect(await check(app)).toMatchObject({ healthy: true, problems: [], consumers: { handlers: 2, attached: 2 } }),
    );

    // Someone deletes the handler's queue (the broker cancels the consumer) and declares it again as a
    // quorum queue: the consumer's fresh channel cannot declare its classic queue, and keeps retrying.
    const queue = `${ns.serviceName}.OrderCreatedRecorder`;
    const channel = await (await ns.amqp()).createChannel();
    try {
      await channel.deleteQueue(queue);
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    } finally {
      await channel.close();
    }
    await eventually(() =>
      expect(logger.lines.filter((line) => line.includes(`Reopening channel "consumer:${queue}" failed`) && line.includes('PRECONDITION_FAILED'))).not.toEqual([]),
    );
    expect(await check(app)).toEqual({
      healthy: false,
      problems: ['1 of 2 handler(s) have no consumer attached'],
      broker: { connected: true, transport: expect.stringMatching(/^RabbitMQ at /) },
      relay: { enabled: true, running: true },
      consumers: { handlers: 2, attached: 1 },
      outbox: { backlog: 0, lagMs: 0, maxLagMs: 60_000, failing: 0 },
    });

    // The conflicting queue goes: the consumer's next attempt declares its own and subscribes.
    const cleanup = await (await ns.amqp()).createChannel();
    try {
      await cleanup.deleteQueue(queue);
    } finally {
      await cleanup.close();
    }
    await eventually(
      async () => expect(await check(app)).toMatchObject({ healthy: true, problems: [], consumers: { handlers: 2, attached: 2 } }),
      { timeoutMs: 15_000 },
    );
    const id = await publish(app, 'attached-again');
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([id]));
  });

  it('holds the oldest due row to 60 s by default: 30 s of waiting is healthy, 90 s is not', async () => {
    const app = await start();
    await eventually(async () => expect(await check(app)).toMatchObject({ healthy: true, outbox: { backlog: 0 } }));

    // A row due 30 s ago that the running relay cannot send: another relay's lease holds it.
    const db = await ns.sql();
    const {
      rows: [row],
    } = await db.query<{ id: string }>(
      `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, available_at, locked_until)
       VALUES (gen_random_uuid(), 'stuck.event', 1, '{}', '{}', now(), now() - interval '30 seconds', now() + interval '1 hour') RETURNING id`,
    );
    const fine = await check(app);
    expect(fine).toMatchObject({
      healthy: true,
      problems: [],
      relay: { enabled: true, running: true },
      outbox: { backlog: 1, maxLagMs: 60_000, failing: 0 },
    });
    expect(fine.outbox.lagMs).toBeGreaterThanOrEqual(30_000);
    expect(fine.outbox.lagMs).toBeLessThan(40_000);

    // The same row, due 90 s ago: only its wait differs.
    await db.query(`UPDATE ${ns.outboxTable} SET available_at = now() - interval '90 seconds' WHERE id = $1`, [row!.id]);
    const lagging = await check(app);
    expect(lagging).toMatchObject({
      healthy: false,
      relay: { enabled: true, running: true },
      outbox: { backlog: 1, maxLagMs: 60_000, failing: 0 },
    });
    expect(lagging.problems).toEqual([expect.stringMatching(/^the oldest due outbox row waits for 9\d s \(more than 60 s\)$/)]);
    expect(lagging.outbox.lagMs).toBeGreaterThanOrEqual(90_000);
    expect(lagging.outbox.lagMs).toBeLessThan(100_000);
    // Still unsent: the relay never got to it (the lease held), so the lag was the one thing measured.
    expect((await ns.outboxRows()).map((r) => [r.id, r.status, r.attempts])).toEqual([[row!.id, 'pending', 0]]);
  });
});
