import { randomBytes } from 'node:crypto';
import { Test, type TestingModule } from '@nestjs/testing';
import {
  BrokerConnectionError,
  DeadLetterService,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  IntegrationEventsModule,
  NonRetryableError,
  OutboxRelay,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import * as amqp from 'amqplib';
import type { ConfirmChannel } from 'amqplib';
import { RabbitMqConnection, RabbitMqPublishingConnection } from '../libs/integration-events/src/transport/rabbitmq/rabbitmq.connection';
import { RabbitMqTransport } from '../libs/integration-events/src/transport/rabbitmq/rabbitmq.transport';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { CapturingLogger } from './support/capturing-logger';
import { consistently, eventually } from './support/eventually';
import { infrastructureImports, startTestApp, testOptions, trackHandlerQueues } from './support/test-app';
import { rabbitmqctl } from './support/rabbitmqctl';
import { TcpProxy } from './support/tcp-proxy';
import { rabbitMqUrlVia, TEST_RABBITMQ_ADDRESS, TEST_RABBITMQ_CREDENTIALS, TEST_RABBITMQ_URL } from './support/services';
import { TestNamespace } from './support/test-namespace';

@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class SecondHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly ids: string[] = [];
  handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): void {
    this.ids.push(context.messageId);
  }
}

/** One call at a time with five in hand; its first call runs `onFirstCall`, then fails for good. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { concurrency: 1, prefetch: 5, inbox: false })
class OneAtATime implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly calls: string[] = [];
  onFirstCall: () => Promise<void> = async () => undefined;
  async handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.calls.push(context.messageId);
    if (this.calls.length > 1) return;
    await this.onFirstCall();
    throw new NonRetryableError('refused');
  }
}

/** Records each call's attempt; its first call waits for `release()`, then fails (to be retried). */
abstract class FirstCallHeld implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly attempts: number[] = [];
  /** The first call's signal: it fires when the shutdown begins (or the call's timeout passes). */
  firstSignal: AbortSignal | undefined;
  release: () => void = () => undefined;
  private readonly released = new Promise<void>((resolve) => (this.release = resolve));
  /** Whether a call after the first fails too. */
  protected abstract readonly laterCallsFail: boolean;
  async handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.attempts.push(context.attempt);
    if (this.attempts.length === 1) {
      this.firstSignal = context.signal;
      await this.released;
    }
    else if (!this.laterCallsFail) return;
    throw new Error('transient');
  }
}

/** Fails every call, for good after two attempts; its first call waits for `release()` before failing. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { inbox: false, retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 } })
class FailsAfterRelease extends FirstCallHeld {
  protected readonly laterCallsFail = true;
}

/** Its first call waits for `release()`, then fails (to be retried); later calls succeed. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { inbox: false, retry: { maxAttempts: 3, initialDelayMs: 50, maxDelayMs: 50 } })
class FirstCallFailsAfterRelease extends FirstCallHeld {
  protected readonly laterCallsFail = false;
}

/** Five deliveries at a time, one call at a time; its first call waits for `release()`. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { inbox: false, prefetch: 5, concurrency: 1 })
class SlowFirstCall extends FirstCallHeld {
  protected readonly laterCallsFail = false;
  override async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    await super.handle(event, context).catch(() => undefined);
  }
}

/** Five deliveries at a time, two calls at a time; its first call waits for `release()`, later calls succeed. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { inbox: false, prefetch: 5, concurrency: 2 })
class SlowFirstCallTwoAtOnce extends FirstCallHeld {
  protected readonly laterCallsFail = false;
  override async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    await super.handle(event, context).catch(() => undefined);
  }
}

/** How many consumers the broker counts on `queue`. */
async function consumerCount(ns: TestNamespace, queue: string): Promise<number> {
  const channel = await (await ns.amqp()).createChannel();
  try {
    return (await channel.checkQueue(queue)).consumerCount;
  } finally {
    await channel.close();
  }
}

/**
 * Holds every subscription to `queue` from here on once the broker has answered it: the consumer gets
 * the answer only after `release()` (its deliveries start meanwhile, as the broker sends them). `reached`
 * tells that one was answered; `restore()` ends the holding.
 */
async function holdSubscriptions(connection: amqp.ChannelModel, queue: string) {
  const probe = await connection.createConfirmChannel();
  // amqplib's Channel.prototype, which every channel's consume() comes from (ConfirmChannel's parent).
  const channelPrototype = Object.getPrototypeOf(Object.getPrototypeOf(probe)) as ConfirmChannel;
  await probe.close();
  const consume = channelPrototype.consume;
  const gate = { reached: false, release: (): void => undefined, restore: (): void => undefined };
  const released = new Promise<void>((resolve) => (gate.release = resolve));
  const spy = jest.spyOn(channelPrototype, 'consume').mockImplementation(async function (this: ConfirmChannel, ...args: Parameters<ConfirmChannel['consume']>) {
    const answer = await consume.apply(this, args);
    if (args[0] === queue) {
      gate.reached = true;
      await released;
    }
    return answer;
  });
  gate.restore = () => spy.mockRestore();
  return gate;
}

/**
 * Registers a channel on the app's connection whose `held`-th setup waits until `release()`, then makes
 * a declaration (which fails if the connection died meanwhile, as a real channel's would).
 */
function holdChannelSetup(app: Pick<TestingModule, 'get'>, held: number) {
  const gate = { setups: 0, heldChannelClosed: false, release: (): void => undefined };
  app.get(RabbitMqConnection).manage({
    name: 'test-gate',
    setup: async (channel) => {
      gate.setups++;
      if (gate.setups !== held) return;
      channel.once('close', () => (gate.heldChannelClosed = true));
      await new Promise<void>((resolve) => (gate.release = resolve));
      await channel.checkExchange('amq.topic');
    },
  });
  return gate;
}

/**
 * The broker as the network sees it: down at boot, connections cut, a half-dead path. Through a TCP
 * proxy, so the shared RabbitMQ is never touched.
 */
describe('broker connection failures', () => {
  let ns: TestNamespace;
  let proxy: TcpProxy;
  const apps: TestingModule[] = [];

  beforeEach(async () => {
    ns = await TestNamespace.create();
    proxy = await TcpProxy.create(TEST_RABBITMQ_ADDRESS);
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await proxy.stop();
    await ns.cleanup();
  });

  const start = async (options: Parameters<typeof startTestApp>[1] = {}, heartbeatSeconds = 5) => {
    const app = await startTestApp(ns, {
      ...options,
      options: {
        ...options.options,
        rabbitmq: { url: rabbitMqUrlVia(proxy.port), reconnectInitialDelayMs: 100, reconnectMaxDelayMs: 500, heartbeatSeconds },
      },
    });
    apps.push(app);
    return app;
  };
  const publish = (app: TestingModule, orderId: string) =>
    app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent(orderId), { standalone: true });

  it('starts while the broker is down, keeps events in the outbox, and delivers them once it is up', async () => {
    const app = await start({ providers: [OrderCreatedRecorder] });
    const [id] = await publish(app, 'before-broker');
    expect((await ns.outboxRows()).find((row) => row.id === id)).toMatchObject({ status: 'pending', attempts: 0 });

    await proxy.accept();
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([id]), {
      timeoutMs: 15_000,
    });
    await eventually(async () =>
      expect((await ns.outboxRows()).find((row) => row.id === id)).toMatchObject({ status: 'sent', attempts: 0 }),
    );
  });

  it('recovers from a cut connection: topology re-declared, consumers re-subscribed, relay resumed', async () => {
    await proxy.accept();
    const app = await start({ providers: [OrderCreatedRecorder] });
    const [first] = await publish(app, 'before-cut');
    await eventually(() => expect(app.get(OrderCreatedRecorder).received).toHaveLength(1));

    proxy.cut();
    const [second] = await publish(app, 'after-cut');
    // At least once: the first message's ack may not have reached the broker before the cut, so it may
    // come again; nothing is lost and nothing else arrives.
    await eventually(
      () => expect([...new Set(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId))].sort()).toEqual([first, second].sort()),
      { timeoutMs: 15_000 },
    );
  });

  it('gets past a half-dead connection: the relay does not wedge, and shutdown does not hang', async () => {
    await proxy.accept();
    const app = await start({
      providers: [OrderCreatedRecorder],
      options: { relay: { confirmTimeoutMs: 500, leaseMs: 1_000, retryInitialDelayMs: 100, retryMaxDelayMs: 200 } },
    }, 1);
    // The consuming connection, then the publishing one.
    await eventually(() => expect(proxy.connections).toBe(2));
    proxy.freeze();
    const [id] = await publish(app, 'through-a-frozen-path');
    // Heartbeats (1 s) notice the dead path; the connection is replaced and the row goes out on it.
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toContain(id), {
      timeoutMs: 20_000,
    });
    // The publish that got no confirm counted as a failed attempt (not left to its lease running out).
    await eventually(async () => expect((await ns.outboxRows()).find((row) => row.id === id)?.status).toBe('sent'));
    expect((await ns.outboxRows()).find((row) => row.id === id)!.attempts).toBeGreaterThanOrEqual(1);
    const stopping = Date.now();
    await app.get(OutboxRelay).stop();
    await apps.splice(0, 1)[0]!.close();
    expect(Date.now() - stopping).toBeLessThan(10_000);
  });

  it('counts an attempt only for the row a batch sent: those it never wrote (their window slot never came) are released untouched', async () => {
    await proxy.accept();
    // A window of one message; a retry far off, so that an attempt counted shows as a row held back.
    const app = await start({
      providers: [OrderCreatedRecorder],
      options: { relay: { maxUnconfirmed: 1, confirmTimeoutMs: 500, leaseMs: 1_000, retryInitialDelayMs: 60_000, retryMaxDelayMs: 60_000 } },
    }, 0);
    await eventually(() => expect(proxy.connections).toBe(2));
    // The publishing connection hangs: the first message is written and never confirmed; the other two
    // wait for its window slot until the batch's time runs out.
    proxy.freeze(1);
    const ids = await app
      .get(IntegrationEventPublisher)
      .publish(['unsent-1', 'unsent-2', 'unsent-3'].map((orderId) => new OrderCreatedIntegrationEvent(orderId)), { standalone: true });
    await eventually(async () => {
      const { rows } = await (await ns.sql()).query(`SELECT id, attempts, last_error IS NOT NULL AS failed, lease_token FROM ${ns.outboxTable} ORDER BY seq`);
      expect(rows).toEqual([
        { id: ids[0], attempts: 1, failed: true, lease_token: null },
        { id: ids[1], attempts: 0, failed: false, lease_token: null },
        { id: ids[2], attempts: 0, failed: false, lease_token: null },
      ]);
    });
  });

  it('shuts down on a half-dead connection that nothing detects (heartbeats off): the consumers\' cancel is not awaited for ever', async () => {
    await proxy.accept();
    const app = await start({ providers: [OrderCreatedRecorder, SecondHandler] }, 0);
    await eventually(() => expect(proxy.connections).toBe(2));
    // What a blocked connection (a broker alarm) looks like to the client too: nothing is answered.
    proxy.freeze();
    const closing = apps.splice(0, 1)[0]!.close().then(() => 'closed' as const);
    const outcome = await Promise.race([closing, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 30_000).unref())]);
    expect(outcome).toBe('closed');
    // Its sockets are closed too: one left open, waiting for an answer, would keep the process alive.
    await eventually(() => expect(proxy.connections).toBe(0), { timeoutMs: 2_000 });
  });

  it('keeps consuming while its publishing connection hangs, as RabbitMQ leaves a connection that published during an alarm', async () => {
    await proxy.accept();
    // Heartbeats off: the hung connection stays (a blocked connection's heartbeats are not checked either).
    const app = await start({ providers: [OrderCreatedRecorder] }, 0);
    await eventually(() => expect(proxy.connections).toBe(2));
    const queue = `${ns.serviceName}.OrderCreatedRecorder`;
    // The second connection opened is the publishing one (the consuming one opens first, at boot).
    proxy.freeze(1);
    const ids: Array<string | null> = [];
    for (const orderId of ['during-alarm-1', 'during-alarm-2', 'during-alarm-3']) {
      // Published by another service, straight to the broker.
      ids.push(await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId, placedAt: '2026-11-27T06:00:00.000Z' })));
    }
    // Handled at once, with up to ten at a time: in any order.
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId).sort()).toEqual([...ids].sort()));
    // Their acks reached the broker too: once the service is gone, none of them is back in the queue.
    await apps.splice(0, 1)[0]!.close();
    expect(await ns.queueDepth(queue)).toBe(0);
  });

  /**
   * A service whose handler always fails, with copies' confirms waited for 500 ms and heartbeats off:
   * nothing else would ever notice a hung publishing connection.
   */
  const startAlwaysFailing = async () => {
    await proxy.accept();
    const app = await start({ providers: [OrderCreatedRecorder], options: { relay: { confirmTimeoutMs: 500, leaseMs: 1_000 } } }, 0);
    await eventually(() => expect(proxy.connections).toBe(2));
    const recorder = app.get(OrderCreatedRecorder);
    recorder.behaviour = () => {
      throw new Error('transient');
    };
    return { app, recorder };
  };

  it('gives a message back to its queue when its retry copy is never confirmed, instead of holding the handler\'s slot', async () => {
    const { recorder } = await startAlwaysFailing();
    // The publishing connection (the second opened) hangs: the retry copy is written, never confirmed.
    proxy.freeze(1);
    const id = await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'copy-unconfirmed', placedAt: '2026-11-27T06:00:00.000Z' }));
    // Given back after the copy's 500 ms, and called again: its attempt unchanged, as no copy was placed.
    await eventually(
      () => expect(recorder.received.filter((r) => r.context.messageId === id).map((r) => r.context.attempt).slice(0, 2)).toEqual([1, 1]),
      { timeoutMs: 5_000 },
    );
  });

  it('waits on for a copy sent just before a broker alarm (which holds every confirm) instead of giving the message back', async () => {
    const { app, recorder } = await startAlwaysFailing();
    // The copy is written; then the broker raises an alarm: it blocks the publishing connection, and
    // answers nothing there (the frozen proxy) until the alarm ends.
    const [consumer] = (app.get(RabbitMqTransport) as unknown as { consumers: Array<{ copies: { current: ConfirmChannel } }> }).consumers;
    const publishing = app.get(RabbitMqPublishingConnection);
    let blocked = false;
    Object.defineProperty(publishing, 'isBlocked', { configurable: true, get: () => blocked });
    const copies = consumer!.copies.current;
    const send = copies.sendToQueue.bind(copies);
    copies.sendToQueue = (...args: Parameters<ConfirmChannel['sendToQueue']>) => {
      const written = send(...args);
      proxy.freeze(1);
      blocked = true;
      return written;
    };
    try {
      const id = await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'copy-before-alarm', placedAt: '2026-11-27T06:00:00.000Z' }));
      await eventually(() => expect(recorder.received.filter((r) => r.context.messageId === id)).toHaveLength(1));
      // Five confirm timeouts (a message given back returns within one and its pause of a second): the
      // message stays with its copy, not given back to be handled again.
      await consistently(() => expect(recorder.received.filter((r) => r.context.messageId === id)).toHaveLength(1), { forMs: 2_500 });
      // The alarm ends (its connection still hangs here): the next timeout gives it back.
      blocked = false;
      await eventually(() => expect(recorder.received.filter((r) => r.context.messageId === id).map((r) => r.context.attempt)).toEqual([1, 1]), {
        timeoutMs: 3_000,
      });
    } finally {
      delete (publishing as { isBlocked?: boolean }).isBlocked;
    }
  });

  it('cancels a subscription the broker confirmed only after the shutdown began: it found no consumer to cancel', async () => {
    await proxy.accept();
    const app = await start({ providers: [SlowFirstCall], options: { consumer: { shutdownTimeoutMs: 10_000 } } });
    apps.splice(apps.indexOf(app), 1);
    await eventually(() => expect(proxy.connections).toBe(2));
    const handler = app.get(SlowFirstCall);
    const queue = `${ns.serviceName}.SlowFirstCall`;
    const consumers = () => consumerCount(ns, queue);
    await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'subscribed-late', placedAt: '2026-11-27T06:00:00.000Z' }));
    await eventually(() => expect(handler.attempts).toEqual([1]));
    // The next subscription to the queue is answered by the broker, then held from the consumer.
    const gate = await holdSubscriptions(await ns.amqp(), queue);
    let closing: Promise<void> | undefined;
    try {
      // The consuming connection is lost while the first call runs: its fresh channel subscribes again.
      proxy.cut(0);
      await eventually(() => expect(gate.reached).toBe(true), { timeoutMs: 10_000 });
      // The shutdown begins while the consumer waits for that answer: there is no consumer yet to cancel.
      closing = app.close();
      await eventually(() => expect(handler.firstSignal?.aborted).toBe(true));
      expect(await consumers()).toBe(1);
      gate.release();
      // The late subscription is cancelled at once (not when the drain ends, 10 s on): a message published
      // now stays for the other instances.
      await eventually(async () => expect(await consumers()).toBe(0), { timeoutMs: 3_000 });
      // The first message, redelivered to the late subscription, waited for the slot of the call still
      // running: given back, it is in the queue (once the nack, sent after the cancel, is in).
      await eventually(async () => expect(await ns.queueDepth(queue)).toBe(1));
      await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'after-shutdown-began', placedAt: '2026-11-27T06:00:00.000Z' }));
      await consistently(async () => {
        expect(await consumers()).toBe(0);
        expect(await ns.queueDepth(queue)).toBe(2);
      }, { forMs: 1_000 });
    } finally {
      gate.restore();
      gate.release();
      handler.release();
      await (closing ?? app.close());
    }
  });

  it('sends the acks of calls a late subscription started before the shutdown before its channel closes, not after', async () => {
    await proxy.accept();
    // Acks wait up to a second for others: the shutdown must send them, not leave them to that timer.
    const app = await start({ providers: [SlowFirstCallTwoAtOnce], options: { consumer: { shutdownTimeoutMs: 10_000, ackDelayMs: 1_000 } } });
    apps.splice(apps.indexOf(app), 1);
    await eventually(() => expect(proxy.connections).toBe(2));
    const handler = app.get(SlowFirstCallTwoAtOnce);
    const queue = `${ns.serviceName}.SlowFirstCallTwoAtOnce`;
    await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'acked-late', placedAt: '2026-11-27T06:00:00.000Z' }));
    await eventually(() => expect(handler.attempts).toEqual([1]));
    const gate = await holdSubscriptions(await ns.amqp(), queue);
    let closing: Promise<void> | undefined;
    try {
      // The consuming connection is lost while the first call runs: the message goes back to the queue,
      // comes to the fresh channel's subscription, and its call there ends at once; its ack waits.
      proxy.cut(0);
      await eventually(() => expect(gate.reached).toBe(true), { timeoutMs: 10_000 });
      await eventually(() => expect(handler.attempts).toEqual([1, 1]));
      // The shutdown begins before the consumer has that subscription; then the first call ends.
      closing = app.close();
      await eventually(() => expect(handler.firstSignal?.aborted).toBe(true));
      gate.release();
      // The late subscription is cancelled (and known to the shutdown) before the first call ends.
      await eventually(async () => expect(await consumerCount(ns, queue)).toBe(0));
      handler.release();
      await closing;
      // Its ack went before the channel closed: the message is not back in the queue, to be handled again.
      expect(await ns.queueDepth(queue)).toBe(0);
    } finally {
      gate.restore();
      gate.release();
      handler.release();
      await (closing ?? app.close());
    }
  });

  it('places no copy for a call that fails after its channel closed: the broker gave the message back, and the attempt counts once', async () => {
    await proxy.accept();
    const logger = new CapturingLogger();
    const app = await start({ providers: [FailsAfterRelease], logger });
    await eventually(() => expect(proxy.connections).toBe(2));
    const handler = app.get(FailsAfterRelease);
    const dlq = `${ns.serviceName}.FailsAfterRelease.dlq`;
    const id = await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'closed-mid-call', placedAt: '2026-11-27T06:00:00.000Z' }));
    await eventually(() => expect(handler.attempts).toEqual([1]));
    // The consuming connection (opened first) is lost while the call runs: the broker puts the message
    // back, and delivers it again, attempt 1, once the consumer is back.
    proxy.cut(0);
    await eventually(() => expect(handler.attempts.slice(0, 2)).toEqual([1, 1]), { timeoutMs: 10_000 });
    // Now the first call fails: a retry copy of it would be a second copy of the message.
    handler.release();
    await eventually(async () => expect(await ns.queueDepth(dlq)).toBe(1), { timeoutMs: 10_000 });
    await consistently(async () => {
      expect(await ns.queueDepth(dlq)).toBe(1);
      expect([...handler.attempts].sort()).toEqual([1, 1, 2]);
    }, { forMs: 1_500 });
    expect(logger.lines.filter((line) => line.includes(`Message ${id}`) && line.includes('failed after its channel closed'))).toHaveLength(1);
  });

  it('does not consume again when the consuming connection comes back during the shutdown drain', async () => {
    await proxy.accept();
    const app = await start({ providers: [SlowFirstCall], options: { consumer: { shutdownTimeoutMs: 10_000 } } });
    apps.splice(apps.indexOf(app), 1);
    await eventually(() => expect(proxy.connections).toBe(2));
    const handler = app.get(SlowFirstCall);
    const queue = `${ns.serviceName}.SlowFirstCall`;
    const consumers = () => consumerCount(ns, queue);
    for (let i = 0; i < 10; i++) await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: `drained-${i}`, placedAt: '2026-11-27T06:00:00.000Z' }));
    await eventually(() => expect(handler.attempts).toEqual([1]));
    // Shutdown cancels the consumer, then waits for the call in progress.
    const closing = app.close();
    try {
      await eventually(async () => expect(await consumers()).toBe(0));
      // The consuming connection (opened first) is lost and comes back while the drain waits.
      proxy.cut(0);
      await eventually(() => expect(proxy.connections).toBe(2), { timeoutMs: 5_000 });
      // No consumer takes the queue's messages again: they stay for the other instances.
      await consistently(async () => expect(await consumers()).toBe(0), { forMs: 1_000 });
      expect(handler.attempts).toEqual([1]);
    } finally {
      handler.release();
      await closing;
    }
  });

  it('still places the copy of a call that fails after its queue was deleted: the message went with the queue, the copy keeps it', async () => {
    await proxy.accept();
    const logger = new CapturingLogger();
    const app = await start({ providers: [FirstCallFailsAfterRelease], logger });
    const handler = app.get(FirstCallFailsAfterRelease);
    const queue = `${ns.serviceName}.FirstCallFailsAfterRelease`;
    await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'queue-deleted-mid-call', placedAt: '2026-11-27T06:00:00.000Z' }));
    await eventually(() => expect(handler.attempts).toEqual([1]));
    // The broker cancels the consumer and drops the queue with the message in it; the consumer closes
    // its channel for a fresh one, which declares the queue again.
    const channel = await (await ns.amqp()).createChannel();
    await channel.deleteQueue(queue);
    await channel.close();
    await eventually(() => expect(logger.lines.filter((line) => line.includes('cancelled our consumer'))).toHaveLength(1));
    await eventually(async () => expect(await ns.queueDepth(queue)).toBe(0));
    handler.release();
    await eventually(() => expect(handler.attempts).toEqual([1, 2]), { timeoutMs: 10_000 });
  });

  it('declares a deleted queue again at once, so that the retry copy of a call failing right after is not dropped by the broker', async () => {
    await proxy.accept();
    const logger = new CapturingLogger();
    const app = await start({ providers: [FirstCallFailsAfterRelease], logger });
    const handler = app.get(FirstCallFailsAfterRelease);
    const queue = `${ns.serviceName}.FirstCallFailsAfterRelease`;
    await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'fails-as-queue-deleted', placedAt: '2026-11-27T06:00:00.000Z' }));
    await eventually(() => expect(handler.attempts).toEqual([1]));
    const channel = await (await ns.amqp()).createChannel();
    await channel.deleteQueue(queue);
    await channel.close();
    await eventually(() => expect(logger.lines.filter((line) => line.includes('cancelled our consumer'))).toHaveLength(1));
    // The call fails now: its copy waits 50 ms, then goes to the handler's queue, which must exist by then
    // (the consumer's fresh channel comes a second later; a classic queue's dead letter to no queue is dropped).
    handler.release();
    await eventually(() => expect(handler.attempts).toEqual([1, 2]), { timeoutMs: 10_000 });
  });

  it('declares once more after a declaration under way when asked again meanwhile (the queue may have gone after it declared it)', async () => {
    await proxy.accept();
    const app = await start({ providers: [FirstCallFailsAfterRelease] });
    const [consumer] = (app.get(RabbitMqTransport) as unknown as { consumers: Array<{ declareTopologyAgain(): void }> }).consumers;
    const opened = jest.spyOn(app.get(RabbitMqConnection), 'openChannel');
    // A copy returned, then the consumer cancelled while the first declaration runs: two declarations, one after the other.
    consumer!.declareTopologyAgain();
    consumer!.declareTopologyAgain();
    consumer!.declareTopologyAgain();
    expect(opened).toHaveBeenCalledTimes(1);
    await eventually(() => expect(opened).toHaveBeenCalledTimes(2));
    await consistently(() => expect(opened).toHaveBeenCalledTimes(2), { forMs: 300 });
    await expect(Promise.all(opened.mock.results.map((result) => result.value))).resolves.toHaveLength(2);
  });

  it('starts none of the deliveries waiting for a slot once their channel is closing, though the close is not answered', async () => {
    await proxy.accept();
    const logger = new CapturingLogger();
    // Heartbeats off: the silent connection stays, as a half-dead one does until heartbeats notice.
    const app = await start({ providers: [OneAtATime], logger }, 0);
    await eventually(() => expect(proxy.connections).toBe(2));
    const queue = `${ns.serviceName}.OneAtATime`;
    const handler = app.get(OneAtATime);
    let allPublished = (): void => undefined;
    const published = new Promise<void>((resolve) => (allPublished = resolve));
    handler.onFirstCall = async () => {
      // All five are in the process (published, none ready in the queue): four wait for the one slot.
      await published;
      await eventually(async () => expect(await ns.queueDepth(queue)).toBe(0));
      // What the consuming connection (opened first) sends no longer reaches the broker: the channel's
      // close is never answered.
      proxy.mute(0);
      // The handler's queue is deleted: the broker cancels the consumer, which closes its channel for a new one.
      const channel = await (await ns.amqp()).createChannel();
      await channel.deleteQueue(queue);
      await channel.close();
      await eventually(() => expect(logger.lines.filter((line) => line.includes('cancelled our consumer'))).toHaveLength(1));
    };
    for (let i = 1; i <= 5; i++) {
      await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: `held-${i}`, placedAt: '2026-11-27T06:00:00.000Z' }));
    }
    allPublished();
    await eventually(() => expect(handler.calls).toHaveLength(1));
    // The first call ends (its ack fails on the closing channel); the four waiting must not start: the
    // close, once answered, would return them to the queue, and they would run twice.
    await consistently(() => expect(handler.calls).toHaveLength(1), { forMs: 2_500 });
  });

  it('lists and purges dead letters while its publishing connection hangs (a broker alarm blocks only that one)', async () => {
    await proxy.accept();
    const app = await start({ providers: [OrderCreatedRecorder] }, 0);
    await eventually(() => expect(proxy.connections).toBe(2));
    const deadLetterQueue = `${ns.serviceName}.OrderCreatedRecorder.dlq`;
    const channel = await (await ns.amqp()).createConfirmChannel();
    channel.sendToQueue(deadLetterQueue, Buffer.from('{}'), { messageId: 'dead-1', persistent: true });
    await channel.waitForConfirms();
    await channel.close();
    proxy.freeze(1);
    const deadLetters = app.get(DeadLetterService);
    const within = <T>(work: Promise<T>) =>
      Promise.race([work, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 10_000).unref())]);
    expect(await within(deadLetters.list(deadLetterQueue))).toMatchObject({ total: 1, messages: [{ messageId: 'dead-1' }] });
    expect(await within(deadLetters.purge(deadLetterQueue, { messageIds: ['dead-1'] }))).toEqual({ purged: 1, missing: [] });
  });

  it('fails a requeue and keeps the dead letter when the broker blocks publishing, or never confirms the copy', async () => {
    await proxy.accept();
    const app = await start({ providers: [OrderCreatedRecorder], options: { relay: { confirmTimeoutMs: 500, leaseMs: 1_000 } } }, 0);
    await eventually(() => expect(proxy.connections).toBe(2));
    const queue = `${ns.serviceName}.OrderCreatedRecorder`;
    const deadLetterQueue = `${queue}.dlq`;
    const channel = await (await ns.amqp()).createConfirmChannel();
    const body = JSON.stringify({ orderId: 'dead', placedAt: '2026-11-27T06:00:00.000Z' });
    channel.sendToQueue(deadLetterQueue, Buffer.from(body), { messageId: 'dead-1', persistent: true, headers: { 'ie-queue': queue } });
    await channel.waitForConfirms();
    await channel.close();
    const deadLetters = app.get(DeadLetterService);

    // An alarm the publishing connection was told of: nothing is tried.
    const publishing = app.get(RabbitMqPublishingConnection);
    Object.defineProperty(publishing, 'isBlocked', { configurable: true, get: () => true });
    try {
      await expect(deadLetters.requeue(deadLetterQueue, { all: true })).rejects.toThrow('The broker is blocking publishing');
    } finally {
      delete (publishing as { isBlocked?: boolean }).isBlocked;
    }

    // The connection hangs once the requeue's channel is open (blocked at its publish): the copy's
    // confirm never comes, and the requeue gives up after relay.confirmTimeoutMs.
    const open = jest.spyOn(publishing, 'openChannel').mockImplementation(async function (this: RabbitMqPublishingConnection) {
      const opened = await RabbitMqPublishingConnection.prototype.openChannel.call(this);
      proxy.freeze(1);
      return opened;
    });
    try {
      const started = Date.now();
      await expect(deadLetters.requeue(deadLetterQueue, { all: true })).rejects.toThrow(
        'The broker did not confirm the requeued copy of dead-1 within 500 ms',
      );
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      open.mockRestore();
    }
    // The dead letter is back in its queue (it was read on the consuming connection), and no copy
    // reached the handler.
    expect(await ns.queueDepth(deadLetterQueue)).toBe(1);
    // With the connection still hanging, a new requeue cannot even open its channel: it gives up as soon.
    await expect(deadLetters.requeue(deadLetterQueue, { all: true })).rejects.toThrow(
      'The broker did not open a channel for the requeue within 500 ms',
    );
    expect(await ns.queueDepth(deadLetterQueue)).toBe(1);
    expect(app.get(OrderCreatedRecorder).received).toEqual([]);
  });

  it('keeps the other consumers and the relay running when one queue cannot be re-declared after a reconnect', async () => {
    await proxy.accept();
    const app = await start({ providers: [OrderCreatedRecorder, SecondHandler] });
    await publish(app, 'warm-up');
    await eventually(() => expect(app.get(SecondHandler).ids).toHaveLength(1));

    // Someone redeclares the recorder's queue with other arguments: re-declaring it will now fail.
    const channel = await (await ns.amqp()).createChannel();
    const recorderQueue = `${ns.serviceName}.OrderCreatedRecorder`;
    await channel.deleteQueue(recorderQueue);
    await channel.assertQueue(recorderQueue, { durable: true, arguments: { 'x-max-length': 1_000 } });
    await channel.close();
    proxy.cut();

    const [id] = await publish(app, 'after-conflict');
    await eventually(() => expect(app.get(SecondHandler).ids).toContain(id), { timeoutMs: 15_000 });
  });

  /**
   * Starts the recorder's service, cuts its connections, and returns once the consuming connection's
   * next setup is held at a gate (a channel whose first setup, on the first connection, passes).
   */
  const cutAndHoldTheConsumingSetup = async () => {
    await proxy.accept();
    const app = await start({ providers: [OrderCreatedRecorder] });
    const gate = holdChannelSetup(app, 2);
    await eventually(() => expect(gate.setups).toBe(1));
    proxy.cut();
    await eventually(() => expect(gate.setups).toBe(2), { timeoutMs: 10_000 });
    return { app, gate };
  };

  it('publishes after a reconnect only once the consuming connection has set its channels up again', async () => {
    const { app, gate } = await cutAndHoldTheConsumingSetup();
    // The publishing connection is back meanwhile; its events must wait for this service's queues.
    await eventually(() => expect(app.get(RabbitMqPublishingConnection).isConnected).toBe(true), { timeoutMs: 10_000 });
    const [id] = await publish(app, 'while-consumers-set-up');
    await consistently(async () => expect((await ns.outboxRows()).find((row) => row.id === id)?.status).toBe('pending'), { forMs: 1_000 });
    gate.release();
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toContain(id), {
      timeoutMs: 10_000,
    });
  });

  it('replaces a connection that dies while its channels are being opened, instead of keeping it for live', async () => {
    const { app, gate } = await cutAndHoldTheConsumingSetup();
    // The reconnection is still setting up its channels when it dies too: the setup ends only after
    // the service has seen its connection close.
    proxy.cut();
    await eventually(() => expect(gate.heldChannelClosed).toBe(true));
    gate.release();

    const [id] = await publish(app, 'after-a-cut-during-setup');
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toContain(id), {
      timeoutMs: 15_000,
    });
  });

  it('starts anyway when the connection dies while boot declares the topology, and connects again', async () => {
    await proxy.accept();
    const app = await Test.createTestingModule({
      imports: [
        ...infrastructureImports(ns),
        IntegrationEventsModule.forRoot(
          testOptions(ns, { rabbitmq: { url: rabbitMqUrlVia(proxy.port), reconnectInitialDelayMs: 100, reconnectMaxDelayMs: 500 } }),
        ),
      ],
      providers: [OrderCreatedRecorder],
    }).compile();
    app.useLogger(['error']);
    apps.push(app);
    // A channel whose first setup (during boot) the test holds open while it cuts the connection.
    const gate = holdChannelSetup(app, 1);
    const booting = app.init();
    await eventually(() => expect(gate.setups).toBe(1), { timeoutMs: 10_000 });
    proxy.cut();
    await eventually(() => expect(gate.heldChannelClosed).toBe(true));
    gate.release();
    // Not "refused" (BrokerConnectionError): the broker went away, so boot goes on and connects again.
    await booting;
    trackHandlerQueues(ns, app);

    const [id] = await publish(app, 'after-a-cut-during-boot');
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toContain(id), {
      timeoutMs: 15_000,
    });
  });

  it('keeps the other consumers and the relay running when the broker was down at boot and one queue cannot be declared once it is up', async () => {
    const app = await start({ providers: [OrderCreatedRecorder, SecondHandler] });
    const [id] = await publish(app, 'while-down');

    // Meanwhile someone declared the recorder's queue with other arguments: declaring ours will fail.
    const channel = await (await ns.amqp()).createChannel();
    await channel.assertQueue(`${ns.serviceName}.OrderCreatedRecorder`, { durable: true, arguments: { 'x-max-length': 1_000 } });
    await channel.close();
    await proxy.accept();

    await eventually(() => expect(app.get(SecondHandler).ids).toEqual([id]), { timeoutMs: 15_000 });
    await eventually(async () => expect((await ns.outboxRows()).find((row) => row.id === id)?.status).toBe('sent'));
  });
});

describe('broker connection limits', () => {
  const ctl = (...args: string[]) => rabbitmqctl('-q', ...args);

  it('fails boot when the vhost allows one connection, closing the consuming one it had opened', async () => {
    const vhost = `ie-limit-${randomBytes(4).toString('hex')}`;
    await ctl('add_vhost', vhost);
    let ns: TestNamespace | undefined;
    try {
      ns = await TestNamespace.create();
      await ctl('set_permissions', '-p', vhost, TEST_RABBITMQ_CREDENTIALS.username, '.*', '.*', '.*');
      await ctl('set_vhost_limits', '-p', vhost, '{"max-connections": 1}');
      const url = new URL(TEST_RABBITMQ_URL);
      url.pathname = `/${vhost}`;
      // A message already waits in the handler's queue, as after a deploy.
      const queue = `${ns.serviceName}.OrderCreatedRecorder`;
      const seed = await amqp.connect(url.toString());
      const seeding = await seed.createConfirmChannel();
      await seeding.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
      seeding.sendToQueue(queue, Buffer.from(JSON.stringify({ orderId: 'waiting-at-boot', placedAt: '2026-11-27T06:00:00.000Z' })), {
        messageId: 'm-waiting-at-boot',
        persistent: true,
        contentType: 'application/json',
        headers: { 'ie-event-name': 'ordering.order-created', 'ie-event-version': 1, 'ie-occurred-at': new Date().toISOString() },
      });
      await seeding.waitForConfirms();
      await seed.close();
      await eventually(async () => expect((await ctl('list_connections', 'vhost')).stdout.split('\n').filter((line) => line.trim() === vhost)).toEqual([]));
      const moduleRef = await Test.createTestingModule({
        imports: [...infrastructureImports(ns), IntegrationEventsModule.forRoot(testOptions(ns, { rabbitmq: { url: url.toString() } }))],
        providers: [OrderCreatedRecorder],
      }).compile();
      moduleRef.useLogger(false);
      try {
        await expect(moduleRef.init()).rejects.toThrow(BrokerConnectionError);
        // Nothing of the failed application stays connected, before anyone closes it (its consumers would run on).
        await eventually(async () => expect((await ctl('list_connections', 'vhost')).stdout.split('\n').filter((line) => line.trim() === vhost)).toEqual([]));
        // The consumers had not subscribed: no handler ran in the application that failed to start, and the
        // message waits in its queue, never delivered.
        expect(moduleRef.get(OrderCreatedRecorder).received.map((call) => call.context.messageId)).toEqual([]);
        const check = await amqp.connect(url.toString());
        try {
          const channel = await check.createChannel();
          const waiting = await channel.get(queue, { noAck: true });
          expect(waiting && { messageId: waiting.properties.messageId, redelivered: waiting.fields.redelivered }).toEqual({
            messageId: 'm-waiting-at-boot',
            redelivered: false,
          });
        } finally {
          await check.close();
        }
      } finally {
        await moduleRef.close().catch(() => undefined);
      }
    } finally {
      try {
        await ctl('delete_vhost', vhost);
      } finally {
        await ns?.cleanup();
      }
    }
  });
});
