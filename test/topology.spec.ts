import { randomUUID } from 'node:crypto';
import type { TestingModule } from '@nestjs/testing';
import {
  IntegrationEventHandler,
  IntegrationEventPublisher,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** Queue names fixed in the decorators, unique to this run of the file (another run on the same broker, say a developer's beside CI's, must not share them). */
const RUN = randomUUID().slice(0, 8);

@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class SendConfirmationEmail implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly ids: string[] = [];
  handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): void {
    this.ids.push(context.messageId);
  }
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: `custom-queue-name-${RUN}`, prefetch: 1 })
class NamedQueueHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly ids: string[] = [];
  handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): void {
    this.ids.push(context.messageId);
  }
}

/** Behaviour 5: exchange, per-handler queues, competing instances, queue type. */
describe('topology', () => {
  let ns: TestNamespace;
  const apps: TestingModule[] = [];

  beforeEach(async () => {
    ns = await TestNamespace.create();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await ns.cleanup();
  });

  const start = async (...args: Parameters<typeof startTestApp>) => {
    const app = await startTestApp(...args);
    apps.push(app);
    return app;
  };

  const publishMany = (app: TestingModule, count: number) =>
    app
      .get(IntegrationEventPublisher)
      .publish(
        Array.from({ length: count }, (_, i) => new OrderCreatedIntegrationEvent(`o-${i}`)),
        { standalone: true },
      );

  it('gives each handler its own durable queue, bound by event name, and each gets every event', async () => {
    const app = await start(ns, { providers: [OrderCreatedRecorder, SendConfirmationEmail] });
    const ids = await publishMany(app, 5);
    await eventually(() => {
      expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId).sort()).toEqual([...ids].sort());
      expect(app.get(SendConfirmationEmail).ids.sort()).toEqual([...ids].sort());
    });
    const channel = await (await ns.amqp()).createChannel();
    for (const queue of [`${ns.serviceName}.OrderCreatedRecorder`, `${ns.serviceName}.SendConfirmationEmail`]) {
      await expect(channel.checkQueue(queue)).resolves.toMatchObject({ queue, consumerCount: 1 });
    }
    await channel.close();
  });

  // The decorator's prefetch (deliveries held from the queue) is asserted in concurrency.spec.ts.
  it('consumes from the queue named in the decorator', async () => {
    ns.trackQueue(`custom-queue-name-${RUN}`);
    const app = await start(ns, { providers: [NamedQueueHandler] });
    const ids = await publishMany(app, 3);
    await eventually(() => expect(app.get(NamedQueueHandler).ids.sort()).toEqual([...ids].sort()));
    const channel = await (await ns.amqp()).createChannel();
    await expect(channel.checkQueue(`custom-queue-name-${RUN}`)).resolves.toMatchObject({ consumerCount: 1 });
    await channel.close();
  });

  it('makes instances of one service share a queue and split the work, each event handled once', async () => {
    const first = await start(ns, { providers: [OrderCreatedRecorder], options: { consumer: { prefetch: 1 } } });
    const second = await start(ns, { providers: [OrderCreatedRecorder], options: { consumer: { prefetch: 1 } } });
    for (const app of [first, second]) {
      app.get(OrderCreatedRecorder).behaviour = () => new Promise((resolve) => setTimeout(resolve, 5));
    }
    const ids = await publishMany(first, 40);
    const handled = () => [first, second].flatMap((app) => app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId));
    await eventually(() => expect(handled().sort()).toEqual([...ids].sort()));
    expect(first.get(OrderCreatedRecorder).received.length).toBeGreaterThan(0);
    expect(second.get(OrderCreatedRecorder).received.length).toBeGreaterThan(0);
  });

  it('starts again with other retry delays on the wait queues of the old ones, and retries on them', async () => {
    const first = await start(ns, { providers: [OrderCreatedRecorder], options: { consumer: { retry: { initialDelayMs: 40, maxDelayMs: 160, jitter: 0 } } } });
    await first.close();
    apps.splice(0);

    // Other delays: tiers 0, 60 and 120 ms instead of 0 and 80 ms; the 0 ms queue is declared by both.
    const second = await start(ns, { providers: [OrderCreatedRecorder], options: { consumer: { retry: { initialDelayMs: 30, maxDelayMs: 200, jitter: 0 } } } });
    const recorder = second.get(OrderCreatedRecorder);
    recorder.behaviour = (_event, context) => {
      if (context.attempt < 3) throw new Error('transient');
    };
    const [id] = await publishMany(second, 1);
    await eventually(() => expect(recorder.received.filter((r) => r.context.messageId === id).map((r) => r.context.attempt)).toEqual([1, 2, 3]));
  });

  it('declares quorum queues when asked', async () => {
    const app = await start(ns, { providers: [SendConfirmationEmail], options: { consumer: { queueType: 'quorum' } } });
    const ids = await publishMany(app, 2);
    await eventually(() => expect(app.get(SendConfirmationEmail).ids).toHaveLength(2));
    expect(app.get(SendConfirmationEmail).ids.sort()).toEqual([...ids].sort());
    // RabbitMQ refuses to redeclare a queue with another type: proof of the type it has.
    const channel = await (await ns.amqp()).createChannel();
    const closed = new Promise<Error>((resolve) => channel.on('error', resolve));
    await expect(
      channel.assertQueue(`${ns.serviceName}.SendConfirmationEmail`, { durable: true, arguments: { 'x-queue-type': 'classic' } }),
    ).rejects.toThrow(/PRECONDITION_FAILED.*x-queue-type.*quorum/);
    await closed;
  });
});
