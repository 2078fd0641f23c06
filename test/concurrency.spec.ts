import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import type { TestingModule } from '@nestjs/testing';
import {
  IntegrationEventConsumers,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { bootRefused, startTestApp } from './support/test-app';
import { TcpProxy } from './support/tcp-proxy';
import { TestNamespace } from './support/test-namespace';
import { rabbitMqUrlVia, TEST_RABBITMQ_ADDRESS } from './support/services';

/** Queue names fixed in the decorators, unique to this run of the file (another run on the same broker, say a developer's beside CI's, must not share them). */
const RUN = randomUUID().slice(0, 8);

/** Calls held until the gate opens or the application shuts down; counts how many run at once. */
@Injectable()
class Gate {
  running = 0;
  mostAtOnce = 0;
  readonly started: string[] = [];
  readonly finished: string[] = [];
  private openGate!: () => void;
  readonly opened = new Promise<void>((resolve) => (this.openGate = resolve));
  open(): void {
    this.openGate();
  }
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: `gated-${RUN}`, prefetch: 8, concurrency: 3, inbox: false })
class GatedHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(private readonly gate: Gate) {}

  async handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.gate.started.push(context.messageId);
    this.gate.mostAtOnce = Math.max(this.gate.mostAtOnce, ++this.gate.running);
    await Promise.race([this.gate.opened, new Promise((resolve) => context.signal.addEventListener('abort', resolve))]);
    this.gate.running--;
    this.gate.finished.push(context.messageId);
  }
}

/** Handles at once; records each call and whether the broker said it was delivered before. */
@Injectable()
class Calls {
  readonly ids: string[] = [];
  readonly redelivered: string[] = [];
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: `quick-${RUN}`, prefetch: 8, concurrency: 3, inbox: false })
class QuickHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(private readonly calls: Calls) {}

  handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): void {
    this.calls.ids.push(context.messageId);
    if (context.redelivered) this.calls.redelivered.push(context.messageId);
  }
}

/** `prefetch` deliveries in hand, `concurrency` calls at once, the rest waiting in the process. */
describe('prefetch and concurrency', () => {
  let ns: TestNamespace;
  const apps: TestingModule[] = [];

  beforeEach(async () => {
    ns = await TestNamespace.create();
    ns.trackQueue(`gated-${RUN}`);
    ns.trackQueue(`gated-${RUN}.dlq`);
    ns.trackQueue(`quick-${RUN}`);
    ns.trackQueue(`quick-${RUN}.dlq`);
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await ns?.cleanup();
  });

  const start = async () => {
    const app = await startTestApp(ns, { providers: [Gate, GatedHandler] });
    apps.push(app);
    return app;
  };
  const publish = (app: TestingModule, count: number) =>
    app
      .get(IntegrationEventPublisher)
      .publish(Array.from({ length: count }, (_, i) => new OrderCreatedIntegrationEvent(`o-${i}`)), { standalone: true });

  it('holds `prefetch` deliveries and runs `concurrency` of them; the others start as calls end', async () => {
    const app = await start();
    const gate = app.get(Gate);
    const ids = await publish(app, 12);

    // 8 taken from the queue (4 left there), 3 running, 5 waiting in the process.
    await eventually(async () => expect(await ns.queueDepth(`gated-${RUN}`)).toBe(4));
    await eventually(() => expect(gate.started).toHaveLength(3));
    await consistently(() => expect(gate.started).toHaveLength(3), { forMs: 300 });

    gate.open();
    await eventually(() => expect([...gate.finished].sort()).toEqual([...ids].sort()));
    expect(gate.mostAtOnce).toBe(3);
    expect(gate.started).toHaveLength(12);
    await eventually(async () => expect(await ns.queueDepth(`gated-${RUN}`)).toBe(0));
  });

  it('returns the deliveries still waiting for a slot to the queue at shutdown, unstarted; the next instance handles each once', async () => {
    const first = await start();
    const ids = await publish(first, 12);
    await eventually(() => expect(first.get(Gate).started).toHaveLength(3));
    await eventually(async () => expect(await ns.queueDepth(`gated-${RUN}`)).toBe(4));

    // Shutdown fires the signal: the 3 running calls end and are acked; the 5 waiting never start.
    await apps.splice(0, 1)[0]!.close();
    const firstDid = first.get(Gate).finished;
    expect(firstDid).toHaveLength(3);
    expect(first.get(Gate).started).toHaveLength(3);
    await eventually(async () => expect(await ns.queueDepth(`gated-${RUN}`)).toBe(9));

    const second = await start();
    second.get(Gate).open();
    await eventually(() => expect(second.get(Gate).finished).toHaveLength(9));
    expect([...firstDid, ...second.get(Gate).finished].sort()).toEqual([...ids].sort());
  });

  it('never starts a delivery of a channel that closed: the broker delivers it again, and it runs once', async () => {
    const proxy = await TcpProxy.create(TEST_RABBITMQ_ADDRESS);
    await proxy.accept();
    try {
      const app = await startTestApp(ns, {
        providers: [Gate, GatedHandler],
        options: { rabbitmq: { url: rabbitMqUrlVia(proxy.port), reconnectInitialDelayMs: 100, reconnectMaxDelayMs: 500 } },
      });
      apps.push(app);
      const gate = app.get(Gate);
      const ids = await publish(app, 12);
      await eventually(() => expect(gate.started).toHaveLength(3));
      await eventually(async () => expect(await ns.queueDepth(`gated-${RUN}`)).toBe(4));
      const running = [...gate.started];

      // The connection drops with 3 calls running and 5 deliveries waiting in the process.
      await proxy.refuse();
      proxy.cut();
      await eventually(() => expect(app.get(IntegrationEventConsumers).status.attached).toBe(0));
      gate.open();
      await eventually(() => expect(gate.finished).toHaveLength(3));
      // The waiting ones belonged to the closed channel: none starts (the broker has them back).
      await consistently(() => expect(gate.started).toHaveLength(3), { forMs: 300 });

      await proxy.accept();
      await eventually(() => expect(new Set(gate.finished)).toEqual(new Set(ids)), { timeoutMs: 15_000 });
      const starts = (id: string) => gate.started.filter((started) => started === id).length;
      // Those running at the cut could not be acked and ran again (at-least-once); every other ran once.
      expect(ids.filter((id) => !running.includes(id)).map(starts)).toEqual(new Array(9).fill(1));
    } finally {
      await proxy.stop();
    }
  });

  describe('acks held for consumer.ackDelayMs', () => {
    const startQuick = async () => {
      // The longest window allowed: what is acked before it passes was not held for it.
      const app = await startTestApp(ns, { providers: [Calls, QuickHandler], options: { consumer: { ackDelayMs: 1_000 } } });
      apps.push(app);
      return app;
    };

    it('go at once when half the prefetch is waiting: the broker keeps delivering within the window', async () => {
      const app = await startQuick();
      const calls = app.get(Calls);
      // 8 in hand (prefetch): all handled at once, their acks due. Held for the whole window, the 32
      // others would come 8 a second (the last after 4 s); acked 4 at a time, they come at once.
      const ids = await publish(app, 40);
      await eventually(() => expect([...calls.ids].sort()).toEqual([...ids].sort()), { timeoutMs: 2_000 });
      await eventually(async () => expect(await ns.queueDepth(`quick-${RUN}`)).toBe(0));
      expect(calls.redelivered).toEqual([]);
    });

    it('are sent at shutdown within the window: nothing goes back to the queue, nothing runs again', async () => {
      const first = await startQuick();
      const ids = await publish(first, 2);
      await eventually(() => expect(first.get(Calls).ids).toHaveLength(2));
      await apps.splice(0, 1)[0]!.close();
      expect(await ns.queueDepth(`quick-${RUN}`)).toBe(0);

      const second = await startQuick();
      await consistently(() => expect(second.get(Calls).ids).toEqual([]), { forMs: 300 });
      expect([...first.get(Calls).ids].sort()).toEqual([...ids].sort());
    });

    it('refuses an ackDelayMs outside 0..1000 at boot', async () => {
      await expect(bootRefused(ns, { providers: [], options: { consumer: { ackDelayMs: 1_001 } } })).rejects.toThrow(/consumer\.ackDelayMs/);
      await expect(bootRefused(ns, { providers: [], options: { consumer: { ackDelayMs: -1 } } })).rejects.toThrow(/consumer\.ackDelayMs/);
    });
  });

  it('refuses a concurrency that is not a whole number from 1 to 65535 at boot, naming the handler', async () => {
    @IntegrationEventHandler(OrderCreatedIntegrationEvent, { concurrency: 0 })
    class ZeroConcurrency implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
      handle(): void {}
    }
    await expect(bootRefused(ns, { providers: [ZeroConcurrency] })).rejects.toThrow(/ZeroConcurrency.*concurrency 0 is not a whole number from 1 to 65535/s);
    await expect(bootRefused(ns, { providers: [], options: { consumer: { concurrency: 1.5 } } })).rejects.toThrow(/consumer\.concurrency/);
  });
});
