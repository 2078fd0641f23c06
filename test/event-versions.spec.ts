/**
 * A service moving to a new version of an event handles both for a while, one handler each, paired with
 * `replaces`. Every queue bound to the event's name gets every version: each handler takes its own and
 * leaves the other's to its pair, and nothing is dead-lettered. A handler still dead-letters a version
 * neither takes, a copy sent straight to its queue (a requeued dead letter), which its pair never got,
 * and, when it is not paired (another job done with the same event), every version but its own.
 */
import { Injectable } from '@nestjs/common';
import type { TestingModule } from '@nestjs/testing';
import { IsInt, IsString } from 'class-validator';
import {
  type DeadLetter,
  IntegrationEvent,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { IntegrationEventsTestingModule, IntegrationEventsTestKit } from 'nestjs-integration-events/testing';
import { Test } from '@nestjs/testing';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { registerTestMeterProvider, type TestMeters } from './support/test-meters';
import { bootMessage, infrastructureImports, startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** Version 2 of the fixture's `ordering.order-created`: the amount joined the contract. */
@IntegrationEvent({ name: 'ordering.order-created', version: 2 })
class OrderCreatedV2IntegrationEvent {
  @IsString()
  readonly orderId: string;

  @IsInt()
  readonly amountCents: number;

  constructor(orderId: string, amountCents: number) {
    this.orderId = orderId;
    this.amountCents = amountCents;
  }
}

/** A version 3 no handler of the service takes yet. */
@IntegrationEvent({ name: 'ordering.order-created', version: 3 })
class OrderCreatedV3IntegrationEvent {
  constructor(readonly orderId: string) {}
}

@Injectable()
@IntegrationEventHandler(OrderCreatedV2IntegrationEvent, { replaces: OrderCreatedRecorder })
class OrderCreatedV2Recorder implements IIntegrationEventHandler<OrderCreatedV2IntegrationEvent> {
  readonly received: Array<{ event: OrderCreatedV2IntegrationEvent; context: IntegrationEventContext }> = [];

  handle(event: OrderCreatedV2IntegrationEvent, context: IntegrationEventContext): void {
    this.received.push({ event, context });
  }
}

/** Version 3's handler, taking over from version 2's, which took over from version 1's: a chain of three. */
@IntegrationEventHandler(OrderCreatedV3IntegrationEvent, { replaces: OrderCreatedV2Recorder })
class OrderCreatedV3Recorder implements IIntegrationEventHandler<OrderCreatedV3IntegrationEvent> {
  readonly received: string[] = [];
  handle(_event: OrderCreatedV3IntegrationEvent, context: IntegrationEventContext): void {
    this.received.push(context.messageId);
  }
}

/** Another job done with version 1 of the same event, not paired with the version 2 handler. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class OrderAudit implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { replaces: OrderCreatedRecorder })
class ReplacesSameVersion implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEvent({ name: 'billing.invoice-sent', version: 2 })
class InvoiceSentIntegrationEvent {}

@IntegrationEventHandler(InvoiceSentIntegrationEvent, { replaces: OrderCreatedRecorder })
class ReplacesOtherEvent implements IIntegrationEventHandler<InvoiceSentIntegrationEvent> {
  handle(): void {}
}

/** What a circular import between the two handlers' files makes of `replaces`: undefined where the decorator runs. */
@IntegrationEventHandler(OrderCreatedV2IntegrationEvent, { replaces: undefined })
class ReplacesNotYetDefined implements IIntegrationEventHandler<OrderCreatedV2IntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedV2IntegrationEvent, { replaces: 'OrderCreatedRecorder' } as never)
class ReplacesNothing implements IIntegrationEventHandler<OrderCreatedV2IntegrationEvent> {
  handle(): void {}
}

describe('two versions of one event, one handler each', () => {
  let ns: TestNamespace;
  const apps: TestingModule[] = [];
  /** A test's own meter provider, if it registered one: unregistered after it. */
  let meters: TestMeters | undefined;

  beforeEach(async () => {
    ns = await TestNamespace.create();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await meters?.stop();
    meters = undefined;
    await ns.cleanup();
  });

  const v1Queue = () => `${ns.serviceName}.OrderCreatedRecorder`;
  const v2Queue = () => `${ns.serviceName}.OrderCreatedV2Recorder`;

  it('gives each handler its own version and dead-letters neither on RabbitMQ', async () => {
    meters = registerTestMeterProvider();
    const { counts } = meters;
    const app = await startTestApp(ns, { providers: [OrderCreatedRecorder, OrderCreatedV2Recorder] });
    apps.push(app);
    const publisher = app.get(IntegrationEventPublisher);
    const [v1] = await publisher.publish(new OrderCreatedIntegrationEvent('o-1'), { standalone: true });
    const [v2] = await publisher.publish(new OrderCreatedV2IntegrationEvent('o-2', 1250), { standalone: true });
    // A version neither handler takes is still refused, by both.
    const v3 = await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'o-3' }), { headers: { 'ie-event-version': 3 } });

    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([v1]));
    await eventually(() => expect(app.get(OrderCreatedV2Recorder).received.map((r) => r.context.messageId)).toEqual([v2]));
    expect(app.get(OrderCreatedV2Recorder).received[0]!.event).toEqual(new OrderCreatedV2IntegrationEvent('o-2', 1250));
    await eventually(async () => expect([await ns.queueDepth(`${v1Queue()}.dlq`), await ns.queueDepth(`${v2Queue()}.dlq`)]).toEqual([1, 1]));
    await consistently(async () => {
      expect([await ns.queueDepth(v1Queue()), await ns.queueDepth(v2Queue())]).toEqual([0, 0]);
      expect([await ns.queueDepth(`${v1Queue()}.dlq`), await ns.queueDepth(`${v2Queue()}.dlq`)]).toEqual([1, 1]);
    });
    const channel = await (await ns.amqp()).createChannel();
    try {
      for (const queue of [`${v1Queue()}.dlq`, `${v2Queue()}.dlq`]) {
        const letter = await channel.get(queue, { noAck: true });
        expect(letter && letter.properties.messageId).toBe(v3);
        expect(letter && letter.properties.headers?.['ie-dead-letter-reason']).toBe('poison');
      }
    } finally {
      await channel.close();
    }
    expect(app.get(OrderCreatedRecorder).received).toHaveLength(1);
    expect(app.get(OrderCreatedV2Recorder).received).toHaveLength(1);
    // In the metrics: each handler handled its version, left the other's (other_version), and
    // dead-lettered version 3 (counted once the copy's confirm is in).
    await eventually(async () => {
      for (const handler of ['OrderCreatedRecorder', 'OrderCreatedV2Recorder']) {
        expect(await counts('integration_events.handled', handler)).toEqual([
          ['ordering.order-created', 'ack', 1],
          ['ordering.order-created', 'dead_letter', 1],
          ['ordering.order-created', 'other_version', 1],
        ]);
        expect(await counts('integration_events.dead_lettered', handler)).toEqual([['ordering.order-created', 'poison', 1]]);
      }
    });
  });

  it("dead-letters a copy of the other version sent straight to a handler's queue: no sibling got that one", async () => {
    const app = await startTestApp(ns, { providers: [OrderCreatedRecorder, OrderCreatedV2Recorder] });
    apps.push(app);
    const channel = await (await ns.amqp()).createConfirmChannel();
    try {
      // As a requeue sends a dead letter back: through the default exchange, to the v1 handler's queue.
      channel.sendToQueue(v1Queue(), Buffer.from(JSON.stringify({ orderId: 'o-9', amountCents: 1 })), {
        messageId: 'straight-v2',
        headers: { 'ie-event-name': 'ordering.order-created', 'ie-event-version': 2, 'ie-occurred-at': new Date().toISOString() },
      });
      await channel.waitForConfirms();
    } finally {
      await channel.close();
    }
    await eventually(async () => expect(await ns.queueDepth(`${v1Queue()}.dlq`)).toBe(1));
    expect(app.get(OrderCreatedRecorder).received).toHaveLength(0);
    expect(app.get(OrderCreatedV2Recorder).received).toHaveLength(0);
  });

  it('dead-letters the other version when it comes through another binding, which its pair never got', async () => {
    const app = await startTestApp(ns, { providers: [OrderCreatedRecorder, OrderCreatedV2Recorder] });
    apps.push(app);
    // An operator's own binding of the v1 queue, for replays say.
    const channel = await (await ns.amqp()).createChannel();
    try {
      await channel.bindQueue(v1Queue(), ns.exchange, 'replay.order-created');
    } finally {
      await channel.close();
    }
    await ns.publishRaw('replay.order-created', JSON.stringify({ orderId: 'o-5', amountCents: 5 }), {
      messageId: 'other-binding',
      headers: { 'ie-event-name': 'ordering.order-created', 'ie-event-version': 2 },
    });
    await eventually(async () => expect(await ns.queueDepth(`${v1Queue()}.dlq`)).toBe(1));
    expect(await ns.queueDepth(v2Queue())).toBe(0);
    expect(app.get(OrderCreatedV2Recorder).received).toHaveLength(0);
  });

  it('pairs a chain of three (v3 replaces v2, which replaces v1): each takes its own version, none dead-letters', async () => {
    meters = registerTestMeterProvider();
    const { counts } = meters;
    const app = await startTestApp(ns, { providers: [OrderCreatedRecorder, OrderCreatedV2Recorder, OrderCreatedV3Recorder] });
    apps.push(app);
    const publisher = app.get(IntegrationEventPublisher);
    const [v1] = await publisher.publish(new OrderCreatedIntegrationEvent('o-1'), { standalone: true });
    const [v3] = await publisher.publish(new OrderCreatedV3IntegrationEvent('o-3'), { standalone: true });
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([v1]));
    await eventually(() => expect(app.get(OrderCreatedV3Recorder).received).toEqual([v3]));
    const v3Queue = `${ns.serviceName}.OrderCreatedV3Recorder`;
    await consistently(async () => {
      const depths = await Promise.all([v1Queue(), v2Queue(), v3Queue].flatMap((q) => [ns.queueDepth(q), ns.queueDepth(`${q}.dlq`)]));
      expect(depths).toEqual([0, 0, 0, 0, 0, 0]);
    });
    expect(app.get(OrderCreatedV2Recorder).received).toHaveLength(0);
    // The version 2 handler left both messages to the others of its group; each other left one.
    await eventually(async () => {
      expect(await counts('integration_events.handled', 'OrderCreatedV2Recorder')).toEqual([['ordering.order-created', 'other_version', 2]]);
      for (const handler of ['OrderCreatedRecorder', 'OrderCreatedV3Recorder']) {
        expect(await counts('integration_events.handled', handler)).toEqual([
          ['ordering.order-created', 'ack', 1],
          ['ordering.order-created', 'other_version', 1],
        ]);
      }
    });
  });

  it('leaves nothing to a handler it is not paired with: an unpaired one dead-letters the other version', async () => {
    const app = await startTestApp(ns, { providers: [OrderCreatedRecorder, OrderCreatedV2Recorder, OrderAudit] });
    apps.push(app);
    const [v2] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedV2IntegrationEvent('o-2', 5), { standalone: true });
    await eventually(() => expect(app.get(OrderCreatedV2Recorder).received.map((r) => r.context.messageId)).toEqual([v2]));
    const auditQueue = `${ns.serviceName}.OrderAudit`;
    await eventually(async () => expect(await ns.queueDepth(`${auditQueue}.dlq`)).toBe(1));
    await consistently(async () => expect([await ns.queueDepth(`${v1Queue()}.dlq`), await ns.queueDepth(`${v2Queue()}.dlq`)]).toEqual([0, 0]));
    expect(app.get(OrderCreatedRecorder).received).toHaveLength(0);
  });

  it('refuses at boot a replaces that names no handler of the application, or one of another event or of the same version', async () => {
    await expect(bootMessage(ns, { providers: [OrderCreatedV2Recorder] })).resolves.toBe(
      '@IntegrationEventHandler OrderCreatedV2Recorder: replaces OrderCreatedRecorder, which is not an @IntegrationEventHandler ' +
        'class provided in this application. Name the class of the handler of the other version, and keep it among the providers ' +
        'while both versions are handled.',
    );
    await expect(bootMessage(ns, { providers: [OrderCreatedRecorder, ReplacesSameVersion] })).resolves.toContain(
      'ReplacesSameVersion: replaces OrderCreatedRecorder, which handles version 1 of "ordering.order-created": replaces names the handler of another version',
    );
    await expect(bootMessage(ns, { providers: [OrderCreatedRecorder, ReplacesOtherEvent] })).resolves.toContain(
      'ReplacesOtherEvent: replaces OrderCreatedRecorder, which handles version 1 of "ordering.order-created"',
    );
    await expect(bootMessage(ns, { providers: [ReplacesNothing] })).resolves.toContain('ReplacesNothing: replaces "OrderCreatedRecorder", which is not');
    await expect(bootMessage(ns, { providers: [OrderCreatedRecorder, ReplacesNotYetDefined] })).resolves.toContain(
      "ReplacesNotYetDefined: replaces is undefined where the decorator ran: the class it names was not defined yet, most likely because the two handlers' files import each other.",
    );
  });

  it('gives each handler its own version with the in-process broker of the testing module too', async () => {
    const deadLetters: DeadLetter[] = [];
    const app = await Test.createTestingModule({
      imports: [
        ...infrastructureImports(ns),
        IntegrationEventsTestingModule.forRoot({
          serviceName: ns.serviceName,
          outbox: { schema: ns.schema },
          inbox: { schema: ns.schema },
          consumer: { onDeadLetter: (deadLetter: DeadLetter) => void deadLetters.push(deadLetter) },
        }),
      ],
      providers: [OrderCreatedRecorder, OrderCreatedV2Recorder],
    }).compile();
    app.useLogger(['error']);
    await app.init();
    apps.push(app);
    const kit = app.get(IntegrationEventsTestKit);
    await kit.deliver(new OrderCreatedIntegrationEvent('o-1'));
    await kit.deliver(new OrderCreatedV2IntegrationEvent('o-2', 7));
    await kit.drain();
    expect(app.get(OrderCreatedRecorder).received.map((r) => r.event.orderId)).toEqual(['o-1']);
    expect(app.get(OrderCreatedV2Recorder).received.map((r) => r.event.orderId)).toEqual(['o-2']);
    expect(deadLetters).toEqual([]);
    // A version neither takes: deliver() refuses it (each would dead-letter it)...
    await expect(kit.deliver(new OrderCreatedV3IntegrationEvent('o-3'))).rejects.toThrow(
      'No handler of version 3 of ordering.order-created consumes in this application (its handlers take version 1, 2)',
    );
    // ...and another publisher's copy of it is dead-lettered by both, as on RabbitMQ.
    const v3 = 'o-3-from-elsewhere';
    kit.broker.publish('integration-events', {
      content: Buffer.from(JSON.stringify({ orderId: 'o-3' })),
      messageId: v3,
      routingKey: 'ordering.order-created',
      headers: { 'ie-event-name': 'ordering.order-created', 'ie-event-version': 3, 'ie-occurred-at': new Date().toISOString() },
      properties: {},
      redelivered: false,
    });
    await kit.drain();
    expect(deadLetters.map((d) => [d.messageId, d.reason, d.queue]).sort()).toEqual([
      [v3, 'poison', v1Queue()],
      [v3, 'poison', v2Queue()],
    ]);
    expect(app.get(OrderCreatedRecorder).received).toHaveLength(1);
    expect(app.get(OrderCreatedV2Recorder).received).toHaveLength(1);
  });
});
