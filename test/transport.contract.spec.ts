import type { TestingModule } from '@nestjs/testing';
import {
  DeadLetterService,
  InProcessBroker,
  IntegrationEvent,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  NonRetryableError,
  RequeueInterruptedError,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { startTestApp, type TestAppOptions } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

@IntegrationEvent({ name: 'nobody.subscribes', version: 1 })
class NobodySubscribesEvent {
  constructor(readonly n: number) {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class SecondHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly ids: string[] = [];
  handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): void {
    this.ids.push(context.messageId);
  }
}

interface RawMessage {
  readonly messageId: string | undefined;
  readonly headers: Record<string, unknown>;
  readonly body: string;
}

/** What the contract needs from each transport. */
interface TransportFixture {
  readonly ns: TestNamespace;
  start(options: TestAppOptions): Promise<TestingModule>;
  /** Publishes raw bytes as a foreign publisher would (valid contract headers unless overridden). */
  injectRaw(routingKey: string, body: string, messageId: string, headers?: Record<string, unknown>): Promise<void>;
  /** Takes every message out of a dead-letter queue. */
  drainDeadLetters(queue: string): Promise<RawMessage[]>;
  /** Puts a message straight into a (dead-letter) queue, as another tool would. */
  putDeadLetter(queue: string, body: string, messageId: string | undefined, headers: Record<string, unknown>): Promise<void>;
  /** Makes a queue nobody consumes (a renamed handler's old one). */
  declareQueue(queue: string): Promise<void>;
  close(): Promise<void>;
}

async function rabbitMqFixture(): Promise<TransportFixture> {
  const ns = await TestNamespace.create();
  return {
    ns,
    start: (options) => startTestApp(ns, options),
    injectRaw: async (routingKey, body, messageId, headers = {}) => {
      await ns.publishRaw(routingKey, body, { messageId, headers });
    },
    drainDeadLetters: async (queue) =>
      (await ns.drainQueue(queue)).map((m) => ({
        messageId: m.properties.messageId,
        headers: m.properties.headers ?? {},
        body: m.content.toString('utf8'),
      })),
    putDeadLetter: async (queue, body, messageId, headers) => {
      const channel = await (await ns.amqp()).createConfirmChannel();
      channel.sendToQueue(queue, Buffer.from(body), { messageId, headers, persistent: true });
      await channel.waitForConfirms();
      await channel.close();
    },
    declareQueue: async (queue) => {
      const channel = await (await ns.amqp()).createChannel();
      await channel.assertQueue(ns.trackQueue(queue), { durable: true });
      await channel.close();
    },
    close: () => ns.cleanup(),
  };
}

async function inProcessFixture(): Promise<TransportFixture> {
  const ns = await TestNamespace.create();
  const broker = new InProcessBroker();
  return {
    ns,
    start: (options) => startTestApp(ns, { ...options, options: { ...options.options, inProcess: { broker } } }),
    injectRaw: async (routingKey, body, messageId, headers = {}) => {
      broker.publish(ns.exchange, {
        content: Buffer.from(body),
        messageId,
        routingKey,
        headers: { 'ie-event-name': routingKey, 'ie-event-version': 1, 'ie-occurred-at': new Date().toISOString(), ...headers },
        properties: {},
        redelivered: false,
      });
    },
    drainDeadLetters: async (queue) =>
      (broker.findQueue(queue)?.take(() => true) ?? []).map((m) => ({
        messageId: m.messageId,
        headers: { ...m.headers },
        body: m.content.toString('utf8'),
      })),
    putDeadLetter: async (queue, body, messageId, headers) => {
      broker.sendToQueue(queue, { content: Buffer.from(body), messageId, routingKey: queue, headers, properties: {}, redelivered: false });
    },
    declareQueue: async (queue) => {
      broker.queue(queue);
    },
    close: async () => {
      broker.close();
      await ns.cleanup();
    },
  };
}

/**
 * One contract, run against both transports: what a service sees must not depend on whether RabbitMQ or
 * the in-process broker carries its events.
 */
describe.each([
  ['RabbitMQ', rabbitMqFixture],
  ['in-process', inProcessFixture],
])('transport contract: %s', (_name, createFixture) => {
  let fixture: TransportFixture;
  const apps: TestingModule[] = [];
  const queue = () => `${fixture.ns.serviceName}.OrderCreatedRecorder`;

  beforeEach(async () => {
    fixture = await createFixture();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await fixture.close();
  });

  const start = async (options: TestAppOptions = {}) => {
    const app = await fixture.start({
      providers: [OrderCreatedRecorder, SecondHandler],
      ...options,
      options: { consumer: { retry: { initialDelayMs: 30, maxDelayMs: 60 } }, ...options.options },
    });
    apps.push(app);
    return app;
  };
  const publish = (app: TestingModule, ...orderIds: string[]) =>
    app.get(IntegrationEventPublisher).publish(orderIds.map((id) => new OrderCreatedIntegrationEvent(id)), { standalone: true });
  const calls = (app: TestingModule, id: string) => app.get(OrderCreatedRecorder).received.filter((r) => r.context.messageId === id);

  it('delivers a committed event to each handler of it, as an instance with its context', async () => {
    const app = await start();
    const [id] = await publish(app, 'o-1');
    await eventually(() => expect(calls(app, id!)).toHaveLength(1));
    const { event, context } = calls(app, id!)[0]!;
    expect(event).toBeInstanceOf(OrderCreatedIntegrationEvent);
    expect(event.placedAt).toBeInstanceOf(Date);
    expect(context).toMatchObject({ messageId: id, attempt: 1, eventName: 'ordering.order-created', eventVersion: 1 });
    await eventually(() => expect(app.get(SecondHandler).ids).toEqual([id]));
  });

  it('lets instances of a service share a handler\'s queue, each event handled once', async () => {
    const [first, second] = [await start(), await start()];
    const ids = await publish(first, ...Array.from({ length: 20 }, (_, i) => `o-${i}`));
    const handled = () => [first, second].flatMap((app) => app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId));
    await eventually(() => expect(handled().sort()).toEqual([...ids].sort()));
    await consistently(() => expect(handled()).toHaveLength(20), { forMs: 200 });
  });

  it('publishes a delayed event when it is due, not before', async () => {
    const app = await start({ options: { relay: { pollIntervalMs: 50 } } });
    const publisher = app.get(IntegrationEventPublisher);
    const publishedAt = Date.now();
    const [delayed] = await publisher.publish(new OrderCreatedIntegrationEvent('o-later'), { standalone: true, delay: 800 });
    const [due] = await publisher.publish(new OrderCreatedIntegrationEvent('o-past'), { standalone: true, deliverAt: new Date(Date.now() - 1_000) });
    await eventually(() => expect(calls(app, due!)).toHaveLength(1));
    expect(calls(app, delayed!)).toHaveLength(0);
    await eventually(() => expect(calls(app, delayed!)).toHaveLength(1), { timeoutMs: 5_000 });
    expect(app.get(OrderCreatedRecorder).received.find((r) => r.context.messageId === delayed)).toBeDefined();
    expect(Date.now() - publishedAt).toBeGreaterThanOrEqual(800);
  });

  it('flags an event nobody subscribes to as unroutable', async () => {
    const app = await start();
    const [id] = await app.get(IntegrationEventPublisher).publish(new NobodySubscribesEvent(1), { standalone: true });
    await eventually(async () => expect((await fixture.ns.outboxRows()).find((row) => row.id === id)?.status).toBe('unroutable'));
  });

  it('retries a failing handler with the attempt header and backoff, without re-running the other handlers', async () => {
    const app = await start();
    const times: number[] = [];
    app.get(OrderCreatedRecorder).behaviour = (_event, context) => {
      times.push(Date.now());
      if (context.attempt < 3) throw new Error('transient');
    };
    const [id] = await publish(app, 'o-retry');
    await eventually(() => expect(calls(app, id!).map((r) => r.context.attempt)).toEqual([1, 2, 3]));
    expect(calls(app, id!)[2]!.context.headers).toMatchObject({ 'ie-attempt': 3, 'ie-last-error': 'Error: transient' });
    // Jittered backoff: at least 80 % of 30 ms, then of 60 ms.
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(24 - 5);
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(48 - 5);
    await consistently(() => expect(app.get(SecondHandler).ids.filter((other) => other === id)).toHaveLength(1), { forMs: 200 });
  });

  it('dead-letters after the last attempt with the original body and the failure headers', async () => {
    const app = await start();
    app.get(OrderCreatedRecorder).behaviour = () => {
      throw new Error('always');
    };
    const [id] = await publish(app, 'o-dead');
    await eventually(() => expect(calls(app, id!)).toHaveLength(10), { timeoutMs: 15_000 });
    const [dead] = await eventually(async () => {
      const drained = await fixture.drainDeadLetters(`${queue()}.dlq`);
      expect(drained).toHaveLength(1);
      return drained;
    });
    expect(dead!.messageId).toBe(id);
    expect(JSON.parse(dead!.body)).toMatchObject({ orderId: 'o-dead' });
    expect(dead!.headers).toMatchObject({
      'ie-event-name': 'ordering.order-created',
      'ie-dead-letter-reason': 'max-attempts',
      'ie-attempts': 10,
      'ie-error-message': 'always',
      'ie-handler': 'OrderCreatedRecorder',
      'ie-queue': queue(),
    });
  });

  it('keeps another publisher\'s x- headers on the retries and the dead letter, and adds none of the broker\'s', async () => {
    const app = await start();
    app.get(OrderCreatedRecorder).behaviour = (_event, context) => {
      throw context.attempt < 2 ? new Error('transient') : new NonRetryableError('refused');
    };
    const body = JSON.stringify({ orderId: 'foreign', placedAt: new Date().toISOString() });
    await fixture.injectRaw('ordering.order-created', body, 'foreign-1', { 'x-tenant-id': 'acme' });
    await eventually(() => expect(calls(app, 'foreign-1').map((r) => [r.context.attempt, r.context.headers['x-tenant-id']])).toEqual([[1, 'acme'], [2, 'acme']]));
    const [dead] = await eventually(async () => {
      const drained = await fixture.drainDeadLetters(`${queue()}.dlq`);
      expect(drained).toHaveLength(1);
      return drained;
    });
    expect(dead!.headers).toMatchObject({ 'x-tenant-id': 'acme', 'ie-dead-letter-reason': 'non-retryable' });
    expect(Object.keys(dead!.headers).filter((name) => name.startsWith('x-'))).toEqual(['x-tenant-id']);
  });

  it('dead-letters a poison message at once and goes on', async () => {
    const app = await start();
    await fixture.injectRaw('ordering.order-created', '{not json', 'poison-1');
    await fixture.injectRaw('ordering.order-created', JSON.stringify({ orderId: 'after', placedAt: new Date().toISOString() }), 'after-1');
    await eventually(() => expect(calls(app, 'after-1')).toHaveLength(1));
    const dead = await eventually(async () => {
      const drained = await fixture.drainDeadLetters(`${queue()}.dlq`);
      expect(drained).toHaveLength(1);
      return drained;
    });
    expect(dead[0]).toMatchObject({ messageId: 'poison-1', headers: { 'ie-dead-letter-reason': 'poison' } });
    expect(calls(app, 'poison-1')).toHaveLength(0);
  });

  it('replays dead letters: requeued ones keep their id and start their attempts afresh', async () => {
    const app = await start({ options: { consumer: { retry: { maxAttempts: 1 } } } });
    app.get(OrderCreatedRecorder).behaviour = (event) => {
      if (event.orderId.startsWith('broken')) throw new Error('bug');
    };
    const ids = await publish(app, 'broken-1', 'broken-2');
    const deadLetters = app.get(DeadLetterService);
    await eventually(async () => expect((await deadLetters.list(`${queue()}.dlq`)).total).toBe(2));
    // The other handler of the event handled both, once each, from the topic exchange.
    await eventually(() => expect([...app.get(SecondHandler).ids].sort()).toEqual([...ids].sort()));
    // A limit of 0: only the count; a limit that is not a whole number is refused.
    expect(await deadLetters.list(`${queue()}.dlq`, 0)).toEqual({ total: 2, messages: [] });
    await expect(deadLetters.list(`${queue()}.dlq`, 1.5)).rejects.toThrow('must be a whole number from 0');
    app.get(OrderCreatedRecorder).behaviour = () => undefined;
    expect((await deadLetters.requeue(`${queue()}.dlq`, { messageIds: [ids[0]!] })).requeued).toEqual([ids[0]]);
    await eventually(() => expect(calls(app, ids[0]!).map((r) => r.context.attempt)).toEqual([1, 1]));
    // The copy went to the failed handler's queue only, not through the topic exchange: the other handler
    // of the event still has each message once, its original delivery.
    await consistently(() => expect([...app.get(SecondHandler).ids].sort()).toEqual([...ids].sort()), { forMs: 400 });
    expect(await deadLetters.purge(`${queue()}.dlq`, { all: true })).toEqual({ purged: 1, missing: [] });
    expect((await deadLetters.list(`${queue()}.dlq`)).total).toBe(0);
    // Selections of no shape they can be are refused, not read as "all" or as ids letter by letter.
    for (const selection of [{ all: false }, { all: 'yes' }, { messageIds: 'abc' }, { messageIds: [1] }, { all: true, messageIds: [] }, null]) {
      await expect(deadLetters.purge(`${queue()}.dlq`, selection as never)).rejects.toThrow('A dead-letter selection is { all: true } or { messageIds: string[] }');
      await expect(deadLetters.requeue(`${queue()}.dlq`, selection as never)).rejects.toThrow('A dead-letter selection is');
    }
    // The handler's own queue, named without ".dlq" by mistake: it has a consumer, and is refused.
    await expect(deadLetters.purge(queue(), { all: true })).rejects.toThrow(`Queue "${queue()}" has 1 consumer(s), and nothing consumes a dead-letter queue`);
  });

  /** A valid order-created body and its contract headers, as a dead letter to requeue carries them. */
  const replayable = () => ({
    body: JSON.stringify({ orderId: 'replayed', placedAt: '2026-11-27T06:00:00.000Z' }),
    contract: { 'ie-event-name': 'ordering.order-created', 'ie-event-version': 1, 'ie-occurred-at': new Date().toISOString() },
  });

  it('requeues in queue order and stops at a dead letter whose queue does not exist, leaving it and the ones after it', async () => {
    const app = await start({});
    const deadLetters = app.get(DeadLetterService);
    const dlq = `${queue()}.dlq`;
    const { body, contract } = replayable();
    const gone = `${queue()}.gone`;
    await fixture.putDeadLetter(dlq, body, 'first', { ...contract, 'ie-queue': queue() });
    await fixture.putDeadLetter(dlq, body, 'orphan', { ...contract, 'ie-queue': gone });
    await fixture.putDeadLetter(dlq, body, 'last', { ...contract, 'ie-queue': queue() });
    const interrupted = await deadLetters.requeue(dlq, { all: true }).catch((error: unknown) => error);
    // It names what went back before it stopped, which is no longer in the dead-letter queue.
    expect(interrupted).toBeInstanceOf(RequeueInterruptedError);
    expect(interrupted).toMatchObject({
      requeued: ['first'],
      message: `Queue "${gone}" does not exist (has its service been started?). Requeued before that, and gone from the dead-letter queue: 1 (first).`,
    });
    await eventually(() => expect(calls(app, 'first')).toHaveLength(1));
    expect((await deadLetters.list(dlq)).messages.map((m) => m.messageId)).toEqual(['orphan', 'last']);
    expect(calls(app, 'last')).toHaveLength(0);
    await deadLetters.purge(dlq, { all: true });
  });

  it('picks a dead letter without a message id (another publisher\'s poison) by the empty id', async () => {
    const app = await start({});
    const deadLetters = app.get(DeadLetterService);
    const dlq = `${queue()}.dlq`;
    await fixture.putDeadLetter(dlq, 'not json', 'with-id', {});
    await fixture.putDeadLetter(dlq, 'no id', undefined, {});
    await eventually(async () => expect((await deadLetters.list(dlq)).total).toBe(2));
    expect(await deadLetters.show(dlq, '')).toMatchObject({ body: 'no id' });
    expect(await deadLetters.purge(dlq, { messageIds: [''] })).toEqual({ purged: 1, missing: [] });
    expect((await deadLetters.list(dlq)).messages.map((m) => m.messageId)).toEqual(['with-id']);
    await deadLetters.purge(dlq, { all: true });
  });

  it('names the queues a requeue sent to that have no consumer (a renamed handler\'s old queue)', async () => {
    const app = await start({});
    const deadLetters = app.get(DeadLetterService);
    const dlq = `${queue()}.dlq`;
    const { body, contract } = replayable();
    const old = `${queue()}.old-name`;
    await fixture.declareQueue(old);
    await fixture.putDeadLetter(dlq, body, 'to-old', { ...contract, 'ie-queue': old });
    await fixture.putDeadLetter(dlq, body, 'to-live', { ...contract, 'ie-queue': queue() });
    await eventually(async () => expect((await deadLetters.list(dlq)).total).toBe(2));
    expect(await deadLetters.requeue(dlq, { all: true })).toEqual({ requeued: ['to-old', 'to-live'], missing: [], withoutConsumers: [old] });
    await eventually(() => expect(calls(app, 'to-live')).toHaveLength(1));
  });
});
