import { getEventListeners } from 'node:events';
import type { TestingModule } from '@nestjs/testing';
import { IntegrationEventPublisher } from 'nestjs-integration-events';
import { TransportHost } from '../libs/integration-events/src/transport/transport-host';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** Behaviour 6: acknowledgement after handle(), and bad messages never crash or block the consumer. */
describe('consuming', () => {
  let ns: TestNamespace;
  const apps: TestingModule[] = [];

  beforeEach(async () => {
    ns = await TestNamespace.create();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await ns.cleanup();
  });

  const start = async (options: NonNullable<Parameters<typeof startTestApp>[1]>['options'] = {}) => {
    const app = await startTestApp(ns, { providers: [OrderCreatedRecorder], options });
    apps.push(app);
    return app;
  };
  const queue = () => `${ns.serviceName}.OrderCreatedRecorder`;
  const validBody = (orderId: string) => JSON.stringify({ orderId, placedAt: new Date().toISOString() });
  const queueDepth = async () => {
    const channel = await (await ns.amqp()).createChannel();
    const { messageCount } = await channel.checkQueue(queue());
    await channel.close();
    return messageCount;
  };

  it('acknowledges only after handle() resolves: an unfinished message goes to the next consumer', async () => {
    const first = await start({ consumer: { shutdownTimeoutMs: 200 } });
    let release!: () => void;
    first.get(OrderCreatedRecorder).behaviour = () => new Promise<void>((resolve) => (release = resolve));
    const [id] = await first.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('o-slow'), {
      standalone: true,
    });
    await eventually(() => expect(first.get(OrderCreatedRecorder).received).toHaveLength(1));
    const firstContext = first.get(OrderCreatedRecorder).received[0]!.context;

    // Shut the first instance down while its handler is still running: its signal fires, the
    // message stays unacknowledged.
    await apps.splice(0, 1)[0]!.close();
    expect(firstContext.signal.aborted).toBe(true);
    release();

    const second = await start();
    await eventually(() => expect(second.get(OrderCreatedRecorder).received).toHaveLength(1));
    const { context } = second.get(OrderCreatedRecorder).received[0]!;
    expect(context.messageId).toBe(id);
    expect(context.redelivered).toBe(true);
    await eventually(async () => expect(await queueDepth()).toBe(0));
  });

  it('returns the message of a handler that gives up on its abort signal at shutdown to the queue', async () => {
    const first = await start({ consumer: { shutdownTimeoutMs: 2_000 } });
    first.get(OrderCreatedRecorder).behaviour = (_event, context) =>
      new Promise<void>((_resolve, reject) => context.signal.addEventListener('abort', () => reject(context.signal.reason)));
    const [id] = await first.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('o-cancelled'), {
      standalone: true,
    });
    await eventually(() => expect(first.get(OrderCreatedRecorder).received).toHaveLength(1));
    await apps.splice(0, 1)[0]!.close();

    const second = await start();
    await eventually(() => expect(second.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([id]));
    // Given back as it came, not counted as a failed attempt: no retry copy (which would arrive as
    // attempt 2, with the failure's headers), and nothing dead-lettered.
    const { context } = second.get(OrderCreatedRecorder).received[0]!;
    expect(context.attempt).toBe(1);
    expect(context.redelivered).toBe(true);
    expect(context.headers['ie-attempt']).toBeUndefined();
    expect(context.headers['ie-last-error']).toBeUndefined();
    await eventually(async () => expect(await queueDepth()).toBe(0));
    expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(0);
  });

  it('leaves nothing on the consumer\'s shutdown signal for calls that read their signal and ended (no growth per message)', async () => {
    const app = await start();
    const signals: AbortSignal[] = [];
    app.get(OrderCreatedRecorder).behaviour = (_event, context) => {
      signals.push(context.signal);
    };
    const count = 300;
    const events = Array.from({ length: count }, (_, i) => new OrderCreatedIntegrationEvent(`o-signal-${i}`));
    await app.get(IntegrationEventPublisher).publish(events, { standalone: true });
    await eventually(() => expect(app.get(OrderCreatedRecorder).received).toHaveLength(count));
    await eventually(async () => expect(await queueDepth()).toBe(0));

    // The consumer's own signal (internal: nothing else reaches it), fired at shutdown, lives as long
    // as the service. On Node 20 a signal made with AbortSignal.any() from it stays in its list of
    // dependants for good (nodejs/node#55351): one entry per message, never collected.
    const consumers = (app.get(TransportHost).transport as unknown as { consumers: Array<{ abort: AbortController }> }).consumers;
    expect(consumers).toHaveLength(1);
    const shutdown = consumers[0]!.abort.signal;
    const dependants = Object.getOwnPropertySymbols(shutdown).find((symbol) => symbol.description === 'kDependantSignals');
    expect(dependants ? (shutdown as unknown as Record<symbol, Set<unknown>>)[dependants]!.size : 0).toBe(0);
    expect(getEventListeners(shutdown, 'abort')).toHaveLength(0);
    expect(signals).toHaveLength(count);
    expect(signals.some((signal) => signal.aborted)).toBe(false);
  });

  it('fires the signal of a call that read it while running, with the shutdown\'s reason', async () => {
    const app = await start({ consumer: { shutdownTimeoutMs: 300 } });
    const reasons: unknown[] = [];
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    app.get(OrderCreatedRecorder).behaviour = async (_event, context) => {
      context.signal.addEventListener('abort', () => reasons.push(context.signal.reason));
      await released;
    };
    await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('o-running'), { standalone: true });
    await eventually(() => expect(app.get(OrderCreatedRecorder).received).toHaveLength(1));
    await apps.splice(0, 1)[0]!.close();
    release();
    expect(reasons).toHaveLength(1);
    expect(String((reasons[0] as Error).message)).toMatch(/shutting down/);
  });

  it('dead-letters a body that is not JSON, or not UTF-8, without calling the handler, and goes on with the next message', async () => {
    const app = await start();
    await ns.publishRaw('ordering.order-created', '{"orderId": "broken"', { messageId: 'not-json' });
    await ns.publishRaw('ordering.order-created', Buffer.from([0xff, 0xfe, 0xfd]), { messageId: 'not-utf8' });
    await ns.publishRaw('ordering.order-created', validBody('after-garbage'), { messageId: 'valid' });
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual(['valid']));
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(2));
    const dead = await ns.drainQueue(`${queue()}.dlq`);
    expect(dead.map((m) => [m.properties.messageId, m.properties.headers?.['ie-dead-letter-reason']])).toEqual([
      ['not-json', 'poison'],
      ['not-utf8', 'poison'],
    ]);
    expect(dead[0]!.properties.headers?.['ie-error-message']).toMatch(/not valid JSON/);
    expect(dead[1]!.properties.headers?.['ie-error-message']).toMatch(/not valid UTF-8/);
    expect(await queueDepth()).toBe(0);
    expect(app.get(OrderCreatedRecorder).received).toHaveLength(1);
  });

  it('dead-letters an event this service has no handler for, and goes on with the next message', async () => {
    const app = await start();
    // A stale binding routes a foreign event into the handler's queue.
    const channel = await (await ns.amqp()).createChannel();
    await channel.bindQueue(queue(), ns.exchange, 'billing.invoice-sent');
    await channel.close();
    await ns.publishRaw('billing.invoice-sent', '{"invoiceId":"i-1"}', { messageId: 'foreign' });
    await ns.publishRaw('ordering.order-created', validBody('after-foreign'), { messageId: 'valid' });
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual(['valid']));
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1));
    const [dead] = await ns.drainQueue(`${queue()}.dlq`);
    expect(dead!.properties.headers?.['ie-error-message']).toMatch(/"billing.invoice-sent" is not the event of handler OrderCreatedRecorder/);
    expect(await queueDepth()).toBe(0);
  });
});
