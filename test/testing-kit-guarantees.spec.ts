/**
 * What the testing module and its kit promise around the edges: `drain()` ends (done or timed out) even
 * when a handler hangs, a handler's own retry policy boots and is fast, the `onDeadLetter` hook is part of
 * the work `drain()` waits for, each application gets a broker of its own, and a call that outlives
 * shutdown gives its message back, as on RabbitMQ. SQLite in memory and the in-process broker: the
 * documented set-up for users' tests.
 */
import { getEventListeners } from 'node:events';
import { Injectable, Module, type ModuleMetadata } from '@nestjs/common';
import { CommandHandler, CqrsModule, EventBus, type ICommandHandler, type IEvent, ofType, Saga } from '@nestjs/cqrs';
import { Test, type TestingModule } from '@nestjs/testing';
import { Transactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { map, type Observable } from 'rxjs';
import { DataSource } from 'typeorm';
import {
  type DeadLetter,
  DeadLetterService,
  IntegrationEvent,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  IntegrationEventsError,
  InvalidIntegrationEventsOptionsError,
  OutboxRelay,
  NonRetryableError,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import {
  DrainTimeoutError,
  InProcessBroker,
  IntegrationEventsTestingModule,
  type IntegrationEventsTestingOptions,
  IntegrationEventsTestKit,
  TestKitRefusalError,
} from 'nestjs-integration-events/testing';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { TransportHost } from '../libs/integration-events/src/transport/transport-host';
import { IntegrationEventsConfig } from '../libs/integration-events/src/options/integration-events.config';
import { MessageDispatcher } from '../libs/integration-events/src/consumer/message-dispatcher';
import { CapturingLogger } from './support/capturing-logger';
import { consistently, eventually } from './support/eventually';
import { sqlitePersistence } from './support/sqlite-persistence';
import { infrastructureImports } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** What the handler of a test does with each event; one per application. */
@Injectable()
class Behaviour {
  calls: Array<{ orderId: string; attempt: number; tenant?: unknown }> = [];
  act: (event: OrderCreatedIntegrationEvent, context: IntegrationEventContext) => Promise<void> | void = () => undefined;
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'shipping.order-created' })
class OrderCreatedHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(private readonly behaviour: Behaviour) {}
  async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.behaviour.calls.push({ orderId: event.orderId, attempt: context.attempt, tenant: context.headers['x-tenant-id'] });
    await this.behaviour.act(event, context);
  }
}

/** The same, with a retry policy of its own that production would keep: seconds between attempts. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, {
  queue: 'shipping.slow-retries',
  retry: { maxAttempts: 3, initialDelayMs: 5_000, maxDelayMs: 60_000 },
})
class SlowRetriesHandler extends OrderCreatedHandler {}

/** The same event name, a later version. */
@IntegrationEvent({ name: 'ordering.order-created', version: 2 })
class OrderCreatedV2IntegrationEvent {
  constructor(
    readonly orderId: string,
    readonly currency: string,
  ) {}
}

const persistence = sqlitePersistence();

describe('the testing module and kit, at the edges', () => {
  const apps: TestingModule[] = [];

  const start = async (
    options: Partial<IntegrationEventsTestingOptions> = {},
    handlers: ModuleMetadata['providers'] = [OrderCreatedHandler],
  ): Promise<{ app: TestingModule; kit: IntegrationEventsTestKit; behaviour: Behaviour }> => {
    const app = await Test.createTestingModule({
      imports: [...persistence!, IntegrationEventsTestingModule.forRoot({ serviceName: 'shipping', ...options })],
      providers: [Behaviour, ...handlers!],
    }).compile();
    app.useLogger(false);
    await app.init();
    apps.push(app);
    return { app, kit: app.get(IntegrationEventsTestKit), behaviour: app.get(Behaviour) };
  };

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });

  it('gives a message back to its queue a second after a fault of its own (outside the handler), not at once in a loop, as on RabbitMQ', async () => {
    const { app, kit, behaviour } = await start();
    const dispatcher = app.get(MessageDispatcher);
    const dispatch = jest.spyOn(dispatcher, 'dispatch').mockRejectedValueOnce(new Error('a fault of the library (test)'));
    const started = performance.now();
    await kit.deliver(new OrderCreatedIntegrationEvent('after-a-fault', new Date()));
    await kit.drain();
    expect(behaviour.calls.map((call) => call.orderId)).toEqual(['after-a-fault']);
    expect(dispatch).toHaveBeenCalledTimes(2);
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('cuts that pause short at shutdown: app.close() does not wait for it', async () => {
    const { app, kit } = await start({ consumer: { shutdownTimeoutMs: 10_000 } });
    const dispatch = jest.spyOn(app.get(MessageDispatcher), 'dispatch').mockRejectedValueOnce(new Error('a fault of the library (test)'));
    await kit.deliver(new OrderCreatedIntegrationEvent('fault-then-close', new Date()));
    await eventually(() => expect(dispatch).toHaveBeenCalledTimes(1));
    const closing = performance.now();
    await apps.splice(apps.indexOf(app), 1)[0]!.close();
    // The pause is a second; the shutdown timeout ten.
    expect(performance.now() - closing).toBeLessThan(800);
    expect(dispatch).toHaveBeenCalledTimes(1);
  });

  it('times drain() out with DrainTimeoutError while a handler hangs (the inbox transaction open on SQLite)', async () => {
    const { kit, behaviour } = await start({ consumer: { shutdownTimeoutMs: 100 } });
    let release!: () => void;
    const hanging = new Promise<void>((resolve) => (release = resolve));
    behaviour.act = () => hanging;
    try {
      await kit.deliver(new OrderCreatedIntegrationEvent('hangs'));
      await eventually(() => expect(behaviour.calls).toHaveLength(1));
      const error = await kit.drain({ timeoutMs: 300 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DrainTimeoutError);
      expect((error as DrainTimeoutError).remaining).toBe('messages in flight in the broker');
    } finally {
      release();
    }
  });

  it('boots with an inbox kept three minutes: its retries wait 50 ms at most here, not the retry policy\'s 5 minutes', async () => {
    // Twice the 60 s handler timeout and twice the 30 s lease; with the 5 minutes, it would be 12 minutes.
    const { kit, behaviour } = await start({ inbox: { retentionMs: 180_000 } });
    await kit.deliver(new OrderCreatedIntegrationEvent('short-retention'));
    await kit.drain();
    expect(behaviour.calls.map((call) => call.orderId)).toEqual(['short-retention']);
  });

  it('refuses a null or non-object option group, as IntegrationEventsModule.forRoot() does, instead of booting on its defaults', () => {
    for (const group of ['relay', 'consumer', 'cleanup'] as const) {
      for (const value of [null, 5, []]) {
        expect(() => IntegrationEventsTestingModule.forRoot({ serviceName: 'kit', [group]: value as never })).toThrow(InvalidIntegrationEventsOptionsError);
        expect(() => IntegrationEventsTestingModule.forRoot({ serviceName: 'kit', [group]: value as never })).toThrow(new RegExp(`"${group}"`));
      }
    }
    // A group given as an object keeps the testing defaults it does not set.
    expect(() => IntegrationEventsTestingModule.forRoot({ serviceName: 'kit', consumer: { prefetch: 5 } })).not.toThrow();
  });

  it('refuses a transport, a broker that is not one, or an unknown key, naming the option the caller gave', () => {
    const refusal = (options: unknown) => {
      try {
        IntegrationEventsTestingModule.forRoot(options as never);
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidIntegrationEventsOptionsError);
        return (error as Error).message;
      }
      throw new Error('not refused');
    };
    // Overwritten without a word before, or reported as "inProcess (given with rabbitmq)".
    expect(refusal({ serviceName: 'kit', inProcess: { maxRetryDelayMs: 5_000 } })).toContain(
      '"inProcess" (got "(given to the testing module)"): leave it out: IntegrationEventsTestingModule runs on an in-process broker of its own, each retry held at most 50 ms',
    );
    expect(refusal({ serviceName: 'kit', rabbitmq: { url: 'amqp://localhost' } })).toContain('"rabbitmq" (got "(given to the testing module)"): leave it out');
    // Reported as "inProcess.broker" before.
    expect(refusal({ serviceName: 'kit', broker: 'shared' })).toContain('"broker" (got "string"): pass an InProcessBroker instance');
    expect(refusal({ serviceName: 'kit', brokr: new InProcessBroker() })).toMatch(/"brokr" .*the known options here are serviceName, outbox, .*, broker\.$/);
    expect(refusal({ serviceName: 'kit', brokr: 1 })).not.toMatch(/rabbitmq|inProcess/);
    expect(refusal(null)).toContain('pass an options object to IntegrationEventsTestingModule.forRoot()');
    // Given as undefined (a shared options factory's `rabbitmq: url ? … : undefined`), a transport is left out.
    expect(() => IntegrationEventsTestingModule.forRoot({ serviceName: 'kit', rabbitmq: undefined, inProcess: undefined } as never)).not.toThrow();
  });

  it('keeps its defaults for option keys given as undefined (a shared options factory with a value unset under test)', async () => {
    const { app } = await start({ relay: { pollIntervalMs: undefined }, consumer: { shutdownTimeoutMs: undefined }, cleanup: { enabled: undefined } });
    const { relay, consumer, cleanup } = app.get(IntegrationEventsConfig).options;
    expect({ pollIntervalMs: relay.pollIntervalMs, shutdownTimeoutMs: consumer.shutdownTimeoutMs, cleanup: cleanup.enabled }).toEqual({
      pollIntervalMs: 20,
      shutdownTimeoutMs: 1_000,
      cleanup: false,
    });
  });

  it('takes isGlobal as IntegrationEventsModule.forRoot() does: with false, the publisher is injectable only where the module is imported', async () => {
    @Injectable()
    class NeedsPublisher {
      constructor(readonly publisher: IntegrationEventPublisher) {}
    }
    @Module({ providers: [NeedsPublisher] })
    class ElsewhereModule {}
    const compile = (isGlobal: boolean, imports: ModuleMetadata['imports'] = [ElsewhereModule], providers: ModuleMetadata['providers'] = []) =>
      Test.createTestingModule({ imports: [...persistence!, IntegrationEventsTestingModule.forRoot({ serviceName: 'shipping', isGlobal }), ...imports!], providers }).compile();

    const global = await compile(true);
    apps.push(global);
    expect(global.get(NeedsPublisher).publisher).toBeInstanceOf(IntegrationEventPublisher);
    await expect(compile(false)).rejects.toThrow(/resolve dependencies of the NeedsPublisher/);
    // Where the testing module is imported, the publisher (and the kit) are injected all the same.
    const local = await compile(false, [], [NeedsPublisher]);
    apps.push(local);
    expect(local.get(NeedsPublisher).publisher).toBeInstanceOf(IntegrationEventPublisher);
    expect(() => IntegrationEventsTestingModule.forRoot({ serviceName: 'shipping', isGlobal: 'false' as never })).toThrow(
      '"isGlobal" (got "false"): use true (the default) or false',
    );
  });

  it('refuses a drain() timeout that would never pass (NaN, 0, negative, Infinity, past a timer\'s 2^31 - 1 ms) instead of waiting for ever', async () => {
    const { kit } = await start();
    for (const timeoutMs of [Number.NaN, 0, -1, Number.POSITIVE_INFINITY, 2_147_483_648]) {
      await expect(kit.drain({ timeoutMs })).rejects.toThrow(`drain({ timeoutMs }) takes a positive number of milliseconds up to 2147483647, not ${timeoutMs}`);
      await expect(kit.drain({ timeoutMs })).rejects.toBeInstanceOf(RangeError);
    }
    await kit.drain({ timeoutMs: 2_147_483_647 });
    await kit.drain({ timeoutMs: 1_000 });
  });

  it('delivers another publisher\'s x- headers with deliver(), kept on the retry', async () => {
    const { kit, behaviour } = await start();
    behaviour.act = () => {
      if (behaviour.calls.length === 1) throw new Error('transient');
    };
    await kit.deliver(new OrderCreatedIntegrationEvent('tenant-order'), { headers: { 'x-tenant-id': 'acme', region: 'eu' } });
    await kit.drain();
    expect(behaviour.calls).toEqual([
      { orderId: 'tenant-order', attempt: 1, tenant: 'acme' },
      { orderId: 'tenant-order', attempt: 2, tenant: 'acme' },
    ]);
    await expect(kit.deliver(new OrderCreatedIntegrationEvent('bad'), { headers: { 'x-bad': {} as never } })).rejects.toThrow(/headers\.x-bad/);
    await expect(kit.deliver(new OrderCreatedIntegrationEvent('bad'), { headers: null as never })).rejects.toThrow(/"headers"/);
  });

  it('refuses a message id or correlation id the consumer would refuse, before anything is delivered', async () => {
    const { kit, behaviour } = await start();
    for (const [options, option] of [
      [{ messageId: 'order 1 created' }, 'messageId'],
      [{ messageId: 'x'.repeat(201) }, 'messageId'],
      [{ messageId: '' }, 'messageId'],
      [{ correlationId: 'flow 7' }, 'correlationId'],
    ] as const) {
      await expect(kit.deliver(new OrderCreatedIntegrationEvent('bad-id'), options)).rejects.toThrow(
        `Invalid publish() option "${option}": use 1-200 printable ASCII characters without spaces.`,
      );
    }
    expect(kit.published).toEqual([]);
    // A valid one goes through and reaches the handler under that id.
    const messageId = await kit.deliver(new OrderCreatedIntegrationEvent('good-id'), { messageId: 'order-1-created', correlationId: 'flow-7' });
    await kit.drain();
    expect(messageId).toBe('order-1-created');
    expect(behaviour.calls.map((call) => call.orderId)).toEqual(['good-id']);
  });

  it('refuses to deliver an event no handler of the application receives, instead of dropping it', async () => {
    const { kit } = await start({}, []);
    await expect(kit.deliver(new OrderCreatedIntegrationEvent('nobody-listens'))).rejects.toThrow(
      'No handler of ordering.order-created consumes in this application',
    );
    // One of the library's errors, as every error it throws is.
    await expect(kit.deliver(new OrderCreatedIntegrationEvent('nobody-listens'))).rejects.toBeInstanceOf(TestKitRefusalError);
    await expect(kit.deliver(new OrderCreatedIntegrationEvent('nobody-listens'))).rejects.toBeInstanceOf(IntegrationEventsError);
  });

  it('refuses to deliver a version of the event no handler of the application takes, which each would dead-letter', async () => {
    const { kit, behaviour } = await start();
    await expect(kit.deliver(new OrderCreatedV2IntegrationEvent('v2', 'EUR'))).rejects.toThrow(
      'No handler of version 2 of ordering.order-created consumes in this application (its handlers take version 1)',
    );
    await kit.drain();
    expect(kit.published).toEqual([]);
    expect(behaviour.calls).toEqual([]);
  });

  it('refuses to deliver an event its handlers would dead-letter as poison without running, and records nothing', async () => {
    const { kit, behaviour } = await start();
    // An empty orderId fails @MinLength(1); a string where the class has a Date is an invalid date.
    await expect(kit.deliver(new OrderCreatedIntegrationEvent(''))).rejects.toThrow(
      /^The ordering.order-created v1 delivered fails the validation rules of OrderCreatedIntegrationEvent \(orderId: .*\): its handlers would dead-letter it as poison$/,
    );
    const dated = Object.assign(new OrderCreatedIntegrationEvent('dated'), { placedAt: 'next tuesday' as unknown as Date });
    await expect(kit.deliver(dated)).rejects.toThrow(
      'The ordering.order-created v1 delivered has an invalid date at $.placedAt once rebuilt as OrderCreatedIntegrationEvent: its handlers would dead-letter it as poison',
    );
    await expect(kit.deliver(dated)).rejects.toBeInstanceOf(TestKitRefusalError);
    await kit.drain();
    expect(kit.published).toEqual([]);
    expect(behaviour.calls).toEqual([]);
  });

  it('refuses to deliver an event over consumer.maxBodyBytes, which its handlers would dead-letter as poison', async () => {
    const { kit, behaviour } = await start({ consumer: { maxBodyBytes: 1_024 }, outbox: { maxPayloadBytes: 1_024 } });
    await expect(kit.deliver(new OrderCreatedIntegrationEvent('x'.repeat(2_000)))).rejects.toThrow(
      /^The ordering.order-created v1 delivered is \d+ bytes, over consumer.maxBodyBytes \(1024\): its handlers would dead-letter it as poison$/,
    );
    await kit.drain();
    expect(kit.published).toEqual([]);
    expect(behaviour.calls).toEqual([]);
  });

  it('refuses it too when another application on a shared broker consumes it, and records nothing', async () => {
    const broker = new InProcessBroker();
    try {
      const other = await start({ broker, serviceName: 'billing' });
      const { kit } = await start({ broker }, []);
      await expect(kit.deliver(new OrderCreatedIntegrationEvent('elsewhere'))).rejects.toThrow(
        'No handler of ordering.order-created consumes in this application',
      );
      await other.kit.drain();
      expect(other.behaviour.calls).toEqual([]);
      expect(kit.published).toEqual([]);
      // An application closed on the shared broker has no consumer any more, though its queue stays bound.
      const closing = await start({ broker, serviceName: 'archive' });
      await closing.app.close();
      await expect(closing.kit.deliver(new OrderCreatedIntegrationEvent('after-close'))).rejects.toThrow('and not closed?');
    } finally {
      for (const app of apps.splice(0)) await app.close();
      broker.close();
    }
  });

  it('drains the kits of services sharing a broker together: a row waiting in the other service\'s outbox counts', async () => {
    const broker = new InProcessBroker();
    try {
      const billing = await start({ broker, serviceName: 'billing', relay: { enabled: false } }, []);
      const shipping = await start({ broker });
      // Billing committed an event its relay has not published yet (off here).
      await billing.app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('from-billing'), { standalone: true });
      // On its own, shipping is idle: nothing of billing's is in its outbox or the broker.
      await shipping.kit.drain();
      expect(shipping.behaviour.calls).toEqual([]);
      await expect(shipping.kit.drain({ alongside: [billing.kit], timeoutMs: 200 })).rejects.toThrow('1 due outbox row(s) of billing');
      await expect(shipping.kit.drain({ alongside: [{} as IntegrationEventsTestKit] })).rejects.toThrow(TypeError);
      await expect(shipping.kit.drain({ alongside: [(await start({ serviceName: 'elsewhere' }, [])).kit] })).rejects.toThrow(
        "drain({ alongside }) takes a list of the IntegrationEventsTestKits of the other services on this kit's broker",
      );
      // With billing's relay running, the drain follows the event to shipping's handler.
      const relaying = await start({ broker, serviceName: 'invoicing' }, []);
      await relaying.app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('from-invoicing'), { standalone: true });
      await shipping.kit.drain({ alongside: [relaying.kit] });
      expect(shipping.behaviour.calls.map((call) => call.orderId)).toContain('from-invoicing');
      // A closed application's outbox can no longer be read, nor its rows published.
      await apps.splice(apps.indexOf(relaying.app), 1)[0]!.close();
      await expect(shipping.kit.drain({ alongside: [relaying.kit] })).rejects.toThrow(
        'drain() was given the kit of a closed application (invoicing): drain before closing it',
      );
    } finally {
      for (const app of apps.splice(0)) await app.close();
      broker.close();
    }
  });

  it('gives the deliveries it holds at shutdown back to their queue in the order they came, as RabbitMQ does', async () => {
    const broker = new InProcessBroker();
    try {
      const { app, kit, behaviour } = await start({ broker, consumer: { concurrency: 3, shutdownTimeoutMs: 100 } });
      // Each call waits for the shutdown, then fails: its message is given back, not counted.
      behaviour.act = (_event, context) =>
        new Promise<void>((_resolve, reject) => context.signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true }));
      for (const n of [1, 2, 3, 4]) await kit.deliver(new OrderCreatedIntegrationEvent(`held-${n}`));
      await eventually(() => expect(behaviour.calls.length).toBeGreaterThan(0));
      apps.splice(apps.indexOf(app), 1);
      await app.close();
      const queued = broker.queue('shipping.order-created').peek();
      expect(queued.map((message) => JSON.parse(message.content.toString()).orderId)).toEqual(['held-1', 'held-2', 'held-3', 'held-4']);
    } finally {
      broker.close();
    }
  });

  it('gives published as a copy: one kept from before an action, or before clear(), does not change', async () => {
    const { kit } = await start();
    const before = kit.published;
    await kit.deliver(new OrderCreatedIntegrationEvent('counted'));
    await kit.drain();
    expect(before).toEqual([]);
    const after = kit.published;
    expect(after.map((message) => message.eventName)).toEqual(['ordering.order-created']);
    kit.clear();
    expect(after).toHaveLength(1);
    expect(kit.published).toEqual([]);
  });

  it('delivers an event as deep as the module\'s consumer.maxDepth allows', async () => {
    const { kit, behaviour } = await start({ consumer: { maxDepth: 100 } });
    const deep: Record<string, unknown> = {};
    let level = deep;
    for (let i = 0; i < 70; i++) level = level.next = {} as Record<string, unknown>;
    await kit.deliver(Object.assign(new OrderCreatedIntegrationEvent('deep'), { trail: deep }));
    await kit.drain();
    expect(behaviour.calls.map((call) => call.orderId)).toEqual(['deep']);
  });

  it('gives publishedEvents() only the class\'s version, and refuses one its consumers would dead-letter as poison', async () => {
    const { app, kit } = await start({}, []);
    const publisher = app.get(IntegrationEventPublisher);
    await publisher.publish(new OrderCreatedIntegrationEvent('fine'), { standalone: true });
    await kit.drain();
    expect(kit.publishedEvents(OrderCreatedIntegrationEvent).map((event) => event.orderId)).toEqual(['fine']);
    expect(kit.publishedEvents(OrderCreatedV2IntegrationEvent)).toEqual([]);
    // An empty orderId fails @MinLength(1): a real consumer refuses it.
    await publisher.publish(new OrderCreatedIntegrationEvent(''), { standalone: true });
    await kit.drain();
    expect(() => kit.publishedEvents(OrderCreatedIntegrationEvent)).toThrow(
      /fails the validation rules of OrderCreatedIntegrationEvent \(orderId: .*\): its consumers would dead-letter it as poison/,
    );
    expect(() => kit.publishedEvents(OrderCreatedIntegrationEvent)).toThrow(TestKitRefusalError);
  });

  it('leaves the events the test delivered itself out of publishedEvents(), though they are in published', async () => {
    const { app, kit, behaviour } = await start();
    const delivered = await kit.deliver(new OrderCreatedIntegrationEvent('delivered'));
    await kit.drain();
    expect(behaviour.calls.map((call) => call.orderId)).toEqual(['delivered']);
    // The handler published nothing: a test asserting it forwards the event must not pass on the delivery.
    expect(kit.publishedEvents(OrderCreatedIntegrationEvent)).toEqual([]);
    expect(kit.published.map((message) => message.messageId)).toEqual([delivered]);
    await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('published'), { standalone: true });
    await kit.drain();
    expect(kit.publishedEvents(OrderCreatedIntegrationEvent).map((event) => event.orderId)).toEqual(['published']);
  });

  it('leaves a delivery through another kit on the same broker out of publishedEvents() too', async () => {
    const broker = new InProcessBroker();
    try {
      const shipping = await start({ broker });
      const billing = await start({ broker, serviceName: 'billing' }, []);
      await shipping.kit.deliver(new OrderCreatedIntegrationEvent('delivered-by-shipping-kit'));
      await shipping.kit.drain({ alongside: [billing.kit] });
      expect(billing.kit.publishedEvents(OrderCreatedIntegrationEvent)).toEqual([]);
      expect(billing.kit.published.map((message) => (message.payload as { orderId: string }).orderId)).toEqual(['delivered-by-shipping-kit']);
    } finally {
      for (const app of apps.splice(0)) await app.close();
      broker.close();
    }
  });

  it('refuses in publishedEvents() an event whose date field holds something a consumer cannot read as a date', async () => {
    const { app, kit } = await start({}, []);
    // Typed as a Date, but a string at run time (from a DTO, say): publish() sends it as it is, and a
    // consumer's @Type(() => Date) makes an invalid date of it, which it dead-letters as poison.
    const event = Object.assign(new OrderCreatedIntegrationEvent('dated'), { placedAt: 'next tuesday' as unknown as Date });
    await app.get(IntegrationEventPublisher).publish(event, { standalone: true });
    await kit.drain();
    expect(() => kit.publishedEvents(OrderCreatedIntegrationEvent)).toThrow(
      /has an invalid date at \$\.placedAt once rebuilt as OrderCreatedIntegrationEvent: its consumers would dead-letter it as poison/,
    );
  });

  it('boots a handler whose own retry policy waits seconds, and runs its attempts without the waits', async () => {
    const { kit, behaviour } = await start({}, [SlowRetriesHandler]);
    behaviour.act = () => {
      throw new Error('carrier down');
    };
    await kit.deliver(new OrderCreatedIntegrationEvent('slow-policy'));
    await kit.drain({ timeoutMs: 5_000 });

    // The policy's three attempts, each retry held at most 50 ms instead of its 5 and 10 s.
    expect(behaviour.calls).toEqual([1, 2, 3].map((attempt) => ({ orderId: 'slow-policy', attempt })));
    expect(kit.broker.findQueue('shipping.slow-retries.dlq')?.depth).toBe(1);
  });

  it('counts the onDeadLetter hook as part of the work: drain() waits for it, and hooks run one per slot', async () => {
    const hooked: string[] = [];
    let running = 0;
    let mostAtOnce = 0;
    const { kit, behaviour } = await start({
      consumer: {
        concurrency: 1,
        onDeadLetter: async (deadLetter: DeadLetter) => {
          mostAtOnce = Math.max(mostAtOnce, ++running);
          // The hook's own work (a call to an alerting service, say): long enough to be seen.
          await new Promise((done) => setTimeout(done, 50));
          hooked.push(deadLetter.messageId!);
          running--;
        },
      },
    });
    behaviour.act = (event) => {
      throw new NonRetryableError(`no carrier for ${event.orderId}`);
    };
    const first = await kit.deliver(new OrderCreatedIntegrationEvent('poison-1'));
    const second = await kit.deliver(new OrderCreatedIntegrationEvent('poison-2'));
    await kit.drain();

    expect(hooked).toEqual([first, second]);
    expect(mostAtOnce).toBe(1);
  });

  it('gives the onDeadLetter hook and show() copies: what they change does not change the stored dead letter', async () => {
    const { app, kit, behaviour } = await start({
      consumer: {
        onDeadLetter: (deadLetter: DeadLetter) => {
          // A hook that redacts before forwarding, in place.
          delete (deadLetter.headers as Record<string, unknown>)['ie-error-stack'];
          (deadLetter.headers as Record<string, unknown>)['ie-queue'] = 'elsewhere';
          deadLetter.body.fill(0);
        },
      },
    });
    behaviour.act = (event) => {
      throw new NonRetryableError(`no carrier for ${event.orderId}`);
    };
    const id = await kit.deliver(new OrderCreatedIntegrationEvent('redacted-by-hook'));
    await kit.drain();
    const deadLetters = app.get(DeadLetterService);
    const shown = (await deadLetters.show('shipping.order-created.dlq', id))!;
    expect(shown.errorStack).toContain('NonRetryableError: no carrier for redacted-by-hook');
    expect(shown.queue).toBe('shipping.order-created');
    // The body too (the same bytes the event's other queues got).
    expect(JSON.parse(shown.body)).toMatchObject({ orderId: 'redacted-by-hook' });
    // show() gives a copy too.
    (shown.headers as Record<string, unknown>)['ie-queue'] = 'elsewhere';
    expect((await deadLetters.show('shipping.order-created.dlq', id))!.queue).toBe('shipping.order-created');
  });

  it('never gives back a message whose dead letter is placed, though its onDeadLetter hook outlives shutdown', async () => {
    const broker = new InProcessBroker();
    let releaseHook!: () => void;
    const hookHangs = new Promise<void>((resolve) => (releaseHook = resolve));
    let hookStarted = false;
    const leaving = await start({
      broker,
      consumer: {
        shutdownTimeoutMs: 100,
        onDeadLetter: async () => {
          hookStarted = true;
          await hookHangs;
        },
      },
    });
    leaving.behaviour.act = () => {
      throw new NonRetryableError('refused');
    };
    try {
      await leaving.kit.deliver(new OrderCreatedIntegrationEvent('dead-before-shutdown'));
      await eventually(() => expect(hookStarted).toBe(true));
      apps.splice(apps.indexOf(leaving.app), 1);
      await leaving.app.close();

      expect(broker.findQueue('shipping.order-created.dlq')?.depth).toBe(1);
      const queue = broker.findQueue('shipping.order-created')!;
      expect([queue.depth, queue.unacked]).toEqual([0, 0]);
      const staying = await start({ broker });
      await staying.kit.drain();
      expect(staying.behaviour.calls).toEqual([]);
    } finally {
      releaseHook();
      broker.close();
    }
  });

  it('gives each application a broker of its own, closed with it: a retry left by one test never reaches the next', async () => {
    // One module, two applications, as a spec file does with one module and an app per test.
    @Module({ imports: [...persistence!, IntegrationEventsTestingModule.forRoot({ serviceName: 'shipping' })], providers: [Behaviour, OrderCreatedHandler] })
    class AppModule {}
    const boot = async () => {
      const app = await Test.createTestingModule({ imports: [AppModule] }).compile();
      app.useLogger(false);
      await app.init();
      apps.push(app);
      return { app, kit: app.get(IntegrationEventsTestKit), behaviour: app.get(Behaviour) };
    };

    const first = await boot();
    first.behaviour.act = () => {
      throw new Error('fails in the first test');
    };
    await first.kit.deliver(new OrderCreatedIntegrationEvent('left-behind'));
    await eventually(() => expect(first.kit.broker.delayed).toBe(1));
    await first.app.close();
    expect(first.kit.broker.delayed).toBe(0);

    const second = await boot();
    expect(second.kit.broker).not.toBe(first.kit.broker);
    await second.kit.deliver(new OrderCreatedIntegrationEvent('own'));
    await second.kit.drain();
    expect(second.behaviour.calls).toEqual([{ orderId: 'own', attempt: 1 }]);
  });

  it('starts no call still waiting for its turn (SQLite) once shutdown has begun: its message goes back to its queue', async () => {
    const broker = new InProcessBroker();
    const leaving = await start({ broker });
    const logger = new CapturingLogger();
    leaving.app.useLogger(logger);
    // The running call ends when shutdown fires its signal (and commits); by then the turns still waited
    // for have been refused, at that same moment.
    leaving.behaviour.act = (_event, context) => new Promise<void>((resolve) => context.signal.addEventListener('abort', () => resolve(), { once: true }));
    let closing: Promise<void> | undefined;
    try {
      for (const orderId of ['first', 'second', 'third']) await leaving.kit.deliver(new OrderCreatedIntegrationEvent(orderId));
      // One call holds the connection's turn; the other two deliveries are in hand, waiting for theirs.
      await eventually(() => expect(leaving.behaviour.calls).toHaveLength(1));
      await eventually(() => expect(broker.findQueue('shipping.order-created')?.depth).toBe(0));
      apps.splice(apps.indexOf(leaving.app), 1);
      closing = leaving.app.close();
      await closing;
      expect(leaving.behaviour.calls.map((call) => call.orderId)).toEqual(['first']);
      // Not failed attempts: given back, as deliveries not yet started, without a retry or a warning.
      expect(logger.text).not.toMatch(/failed message|retrying in|Dead-lettered/);
      expect(logger.lines.filter((line) => line.includes('goes back to its queue at shutdown'))).toHaveLength(2);
      // They are in the queue again, for the next instance.
      const staying = await start({ broker });
      await staying.kit.drain();
      expect(staying.behaviour.calls.map((call) => call.orderId).sort()).toEqual(['second', 'third']);
    } finally {
      await closing;
      broker.close();
    }
  });

  it('waits for more than ten inbox turns at once (SQLite) without a "possible memory leak" warning on the shutdown signal', async () => {
    const { app, kit, behaviour } = await start({ consumer: { concurrency: 15, prefetch: 15 } });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    behaviour.act = () => gate;
    for (let n = 0; n < 15; n++) await kit.deliver(new OrderCreatedIntegrationEvent(`turn-${n}`));
    await eventually(() => expect(behaviour.calls).toHaveLength(1));
    // The consumer's shutdown signal (internal: nothing else reaches it). Node warns once an EventTarget
    // has more listeners than its limit, unless the limit is 0; the jest sandbox's process does not get
    // the warning itself.
    const consumers = (app.get(TransportHost).transport as unknown as { consumers: Array<{ abort: AbortController }> }).consumers;
    const shutdown = consumers[0]!.abort.signal;
    try {
      await eventually(() => expect(getEventListeners(shutdown, 'abort').length).toBeGreaterThan(10));
      // events.getMaxListeners() refuses a signal made in the sandbox's realm: Node's own field, read directly.
      const limit = Object.getOwnPropertySymbols(shutdown).find((symbol) => symbol.description === 'events.maxEventTargetListeners');
      expect(limit && (shutdown as unknown as Record<symbol, unknown>)[limit]).toBe(0);
    } finally {
      release();
    }
    await kit.drain();
    expect(behaviour.calls).toHaveLength(15);
    expect(getEventListeners(shutdown, 'abort')).toHaveLength(0);
  });

  /**
   * A service with a 1 s lease and no handler (its inbox transactions would share the one connection
   * with the test's own: on SQLite an application keeps its transactions from overlapping the
   * library's); a queue takes the messages. `runner` opens the test's transaction.
   */
  const startWithShortLease = async () => {
    const { app, kit } = await start({ relay: { leaseMs: 1_000, confirmTimeoutMs: 400 } }, []);
    kit.broker.bind('integration-events', 'ordering.order-created', 'marked-once-probe');
    const dataSource = app.get(DataSource);
    const transport = app.get(TransportHost).transport;
    let opened!: () => void;
    const isOpen = new Promise<void>((resolve) => (opened = resolve));
    return { app, kit, dataSource, runner: dataSource.createQueryRunner(), transport, publish: transport.publish.bind(transport), isOpen, opened };
  };

  it('marks a confirmed row before the relay\'s next claim runs, though both wait behind a transaction that outlasts the lease', async () => {
    const { app, kit, dataSource, runner, transport, publish, isOpen, opened } = await startWithShortLease();
    // Once the broker has the row, an application transaction opens before the relay hears back, and
    // the relay is asked to claim (rows another instance wrote, say) while the row's mark lingers for
    // others to share it: the claim and the mark both wait for that transaction.
    jest.spyOn(transport, 'publish').mockImplementationOnce(async (messages) => {
      const outcomes = await publish(messages);
      await runner.startTransaction();
      app.get(OutboxRelay).wake();
      opened();
      return outcomes;
    });
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('marked-once'), { standalone: true });
    await isOpen;
    // The scenario: the transaction outlasts the row's lease (1 s from its insert).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await runner.commitTransaction();
    await kit.drain();
    expect(kit.published.filter((message) => message.messageId === id)).toHaveLength(1);
    expect(kit.broker.findQueue('marked-once-probe')?.depth).toBe(1);
    expect(await dataSource.query('SELECT status FROM integration_events_outbox')).toEqual([{ status: 'sent' }]);
  });

  it('writes every mark under way (a set of two leases, one after the other) before the relay\'s next claim, behind a long transaction', async () => {
    const { app, kit, dataSource, runner, transport, publish, isOpen, opened } = await startWithShortLease();
    let calls = 0;
    // Two batches under two leases (a claimed row, a handed-over one) confirmed within the marks' 50 ms:
    // one set of marks, written one after the other. An application transaction opens before the
    // relay hears of the second, so the set's first mark waits for it, and the relay's next claim
    // (every 20 ms here) comes due meanwhile.
    jest.spyOn(transport, 'publish').mockImplementation(async (messages) => {
      const outcomes = await publish(messages);
      if (++calls === 2) {
        await runner.startTransaction();
        opened();
      }
      return outcomes;
    });
    const publisher = app.get(IntegrationEventPublisher);
    const [claimed] = await publisher.publish(new OrderCreatedIntegrationEvent('claimed'), { standalone: true, delay: 1 });
    const [handedOver] = await publisher.publish(new OrderCreatedIntegrationEvent('handed-over'), { standalone: true });
    await isOpen;
    // The scenario: the transaction outlasts both rows' lease (1 s).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await runner.commitTransaction();
    await kit.drain();
    for (const id of [claimed, handedOver]) expect(kit.published.filter((message) => message.messageId === id)).toHaveLength(1);
    expect(await dataSource.query('SELECT status FROM integration_events_outbox')).toEqual([{ status: 'sent' }, { status: 'sent' }]);
  });

  it('returns the message of a call that outlives shutdown to its queue, for another instance', async () => {
    const broker = new InProcessBroker();
    const leaving = await start({ broker, consumer: { shutdownTimeoutMs: 100 } });
    let release!: () => void;
    const hanging = new Promise<void>((resolve) => (release = resolve));
    leaving.behaviour.act = () => hanging;
    let closing: Promise<void> | undefined;
    try {
      await leaving.kit.deliver(new OrderCreatedIntegrationEvent('outlives-shutdown'));
      await eventually(() => expect(leaving.behaviour.calls).toHaveLength(1));
      const staying = await start({ broker });
      // The hung call keeps its SQLite transaction, so the closing application waits for it past its
      // consumers' stop; the message must not wait with it.
      apps.splice(apps.indexOf(leaving.app), 1);
      closing = leaving.app.close();
      await eventually(() => expect(staying.behaviour.calls).toEqual([{ orderId: 'outlives-shutdown', attempt: 1 }]));
      await staying.kit.drain();
    } finally {
      release();
      await closing;
      broker.close();
    }
  });
});

describe('InProcessBroker.close()', () => {
  it('stops delivering: a message given back after it stays in its queue instead of coming straight back', async () => {
    const broker = new InProcessBroker();
    let deliveries = 0;
    broker.queue('q').subscribe((delivery) => {
      deliveries++;
      broker.close();
      delivery.requeue();
    }, 1);
    broker.sendToQueue('q', { content: Buffer.from('{}'), messageId: 'm', routingKey: 'q', headers: {}, properties: {}, redelivered: false });
    // Delivered once, given back, and never again: it waits in its queue, marked as given back.
    await eventually(() => expect(deliveries).toBe(1));
    await consistently(() => expect(deliveries).toBe(1), { forMs: 100 });
    const queue = broker.findQueue('q')!;
    expect([queue.depth, queue.unacked]).toEqual([1, 0]);
    expect(queue.peek().map((message) => [message.messageId, message.redelivered])).toEqual([['m', true]]);
  });
});

describe('InProcessQueue.subscribe()', () => {
  it('cancels once: a second call of the cancel function leaves the other subscribers alone', async () => {
    const broker = new InProcessBroker();
    const queue = broker.queue('q');
    const seen: string[] = [];
    const cancelMine = queue.subscribe(() => seen.push('mine'), 1);
    queue.subscribe((delivery) => {
      seen.push('library');
      delivery.ack();
    }, 1);
    cancelMine();
    cancelMine();
    expect(queue.consumerCount).toBe(1);
    broker.sendToQueue('q', { content: Buffer.from('{}'), messageId: 'm', routingKey: 'q', headers: {}, properties: {}, redelivered: false });
    await eventually(() => expect(seen).toEqual(['library']));
    broker.close();
  });
});

class ParcelRequestedDomainEvent {
  constructor(readonly orderId: string) {}
}

class ShipParcelCommand {
  constructor(readonly orderId: string) {}
}

@IntegrationEvent({ name: 'shipping.parcel-shipped', version: 1 })
class ParcelShippedIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/** Asks for a parcel in its (inbox) transaction; a saga ships it after the commit. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'shipping.request-parcel' })
class RequestParcelHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(private readonly eventBus: EventBus) {}
  async handle(event: OrderCreatedIntegrationEvent): Promise<void> {
    this.eventBus.publish(new ParcelRequestedDomainEvent(event.orderId));
  }
}

@Injectable()
class ShippingSaga {
  @Saga()
  ship = (events$: Observable<IEvent>): Observable<ShipParcelCommand> =>
    events$.pipe(
      ofType(ParcelRequestedDomainEvent),
      map((event) => new ShipParcelCommand(event.orderId)),
    );
}

/** Takes its time in a transaction of its own before it publishes (a carrier's API, say). */
@CommandHandler(ShipParcelCommand)
class ShipParcelHandler implements ICommandHandler<ShipParcelCommand> {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly publisher: IntegrationEventPublisher,
  ) {}

  @Transactional()
  async execute({ orderId }: ShipParcelCommand): Promise<void> {
    await this.txHost.tx.query('SELECT pg_sleep(0.3)');
    await this.publisher.publish(new ParcelShippedIntegrationEvent(orderId));
  }
}

describe('the testing kit on PostgreSQL', () => {
  it('drain() waits for the transaction of a command a saga sent after a handler\'s commit', async () => {
    const ns = await TestNamespace.create();
    const app = await Test.createTestingModule({
      imports: [
        ...infrastructureImports(ns),
        CqrsModule.forRoot(),
        IntegrationEventsTestingModule.forRoot({ serviceName: 'shipping', outbox: { schema: ns.schema }, inbox: { schema: ns.schema } }),
      ],
      providers: [RequestParcelHandler, ShippingSaga, ShipParcelHandler],
    }).compile();
    app.useLogger(false);
    try {
      await app.init();
      const kit = app.get(IntegrationEventsTestKit);
      await kit.deliver(new OrderCreatedIntegrationEvent('o-saga'));
      // The delivery is acked, and the outbox empty, while the command's transaction still runs: only
      // that open transaction says there is work left.
      await kit.drain();
      expect(kit.publishedEvents(ParcelShippedIntegrationEvent)).toEqual([new ParcelShippedIntegrationEvent('o-saga')]);
    } finally {
      await app.close();
      await ns.cleanup();
    }
  });
});
