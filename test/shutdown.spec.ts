import { Injectable, type Provider } from '@nestjs/common';
import { CqrsModule, EventBus, ofType, Saga, type ICommand, type IEvent } from '@nestjs/cqrs';
import { filter, type Observable, tap } from 'rxjs';
import type { TestingModule } from '@nestjs/testing';
import { TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import {
  IntegrationEvent,
  IntegrationEventConsumers,
  IntegrationEventConverter,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  type IIntegrationEventConverter,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';
import { DataSource } from 'typeorm';

@Injectable()
class Work {
  table = '';
  started: string[] = [];
}

/** A slow handler that ignores its abort signal and writes to the database when it is done. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { prefetch: 2 })
class SlowHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(
    private readonly work: Work,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}

  async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.work.started.push(context.messageId);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await this.txHost.tx.query(`INSERT INTO ${this.work.table} (order_id, message_id) VALUES ($1, $2)`, [event.orderId, context.messageId]);
  }
}

class ParcelPackedDomainEvent {
  constructor(readonly orderId: string) {}
}

@IntegrationEvent({ name: 'shipping.parcel-packed', version: 1 })
class ParcelPackedIntegrationEvent {
  constructor(readonly orderId: string) {}
}

@IntegrationEventConverter(ParcelPackedDomainEvent)
class ParcelPackedConverter implements IIntegrationEventConverter<ParcelPackedDomainEvent, ParcelPackedIntegrationEvent> {
  convert(event: ParcelPackedDomainEvent): ParcelPackedIntegrationEvent[] {
    return [new ParcelPackedIntegrationEvent(event.orderId)];
  }
}

/** A slow handler that raises a domain event (turned into an integration event by the cqrs bridge) when done. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class PackParcel implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(
    private readonly work: Work,
    private readonly eventBus: EventBus,
  ) {}

  async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.work.started.push(context.messageId);
    await new Promise((resolve) => setTimeout(resolve, 400));
    this.eventBus.publish(new ParcelPackedDomainEvent(event.orderId));
  }
}

/** A saga that only watches: the domain events that reached the EventBus stream after their commit. */
@Injectable()
class PackingSagas {
  readonly seen: string[] = [];

  @Saga()
  parcelPacked = (events$: Observable<IEvent>): Observable<ICommand> =>
    events$.pipe(
      ofType(ParcelPackedDomainEvent),
      tap((event) => this.seen.push(event.orderId)),
      filter((): boolean => false),
    ) as Observable<never>;
}

@IntegrationEvent({ name: 'shutdown.hangs', version: 1 })
class HangsIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/** A handler whose call never settles, its abort signal ignored. */
@IntegrationEventHandler(HangsIntegrationEvent, { inbox: false })
class Hangs implements IIntegrationEventHandler<HangsIntegrationEvent> {
  calls = 0;
  handle(): Promise<void> {
    this.calls++;
    return new Promise(() => undefined);
  }
}

@IntegrationEvent({ name: 'shutdown.gated', version: 1 })
class GatedIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/** One call at a time, five deliveries in hand: the others wait for its slot. With `gate`, each call waits for it. */
@IntegrationEventHandler(GatedIntegrationEvent, { inbox: false, prefetch: 5, concurrency: 1 })
class GatedHandler implements IIntegrationEventHandler<GatedIntegrationEvent> {
  readonly started: string[] = [];
  gate: Promise<void> = Promise.resolve();
  async handle(event: GatedIntegrationEvent): Promise<void> {
    this.started.push(event.orderId);
    await this.gate;
  }
}

/** Graceful shutdown: drain what is in flight, hand back what is not, lose nothing, do nothing twice. */
describe('graceful shutdown', () => {
  let ns: TestNamespace;
  const apps: TestingModule[] = [];

  // A namespace per test: what one test leaves behind (a message returned to a queue, the relay's
  // pending rows, its sends to queues bound to the same routing key) must not reach the next one.
  beforeEach(async () => {
    ns = await TestNamespace.create();
    await (await ns.sql()).query(`CREATE TABLE "${ns.schema}".work_done (order_id text NOT NULL, message_id text NOT NULL)`);
  });

  afterEach(async () => {
    // The apps first: their consumers and relay are off the queues and schema before these are dropped.
    for (const app of apps.splice(0)) await app.close();
    await ns?.cleanup();
  });

  const start = async () => {
    const app = await startTestApp(ns, { providers: [Work, SlowHandler], options: { consumer: { shutdownTimeoutMs: 5_000 } } });
    app.get(Work).table = `"${ns.schema}".work_done`;
    apps.push(app);
    return app;
  };
  const done = async () =>
    (await (await ns.sql()).query(`SELECT message_id FROM "${ns.schema}".work_done`)).rows.map((r: { message_id: string }) => r.message_id);

  it('finishes and commits the handlers in flight, returns the rest to the queue, and the next instance does the rest once', async () => {
    const first = await start();
    const ids = await first
      .get(IntegrationEventPublisher)
      .publish(Array.from({ length: 6 }, (_, i) => new OrderCreatedIntegrationEvent(`o-${i}`)), { standalone: true });
    await eventually(() => expect(first.get(Work).started.length).toBeGreaterThanOrEqual(1));

    // Close while handlers run: their transactions still commit (the DataSource closes after the drain).
    await apps.splice(0, 1)[0]!.close();
    const startedByFirst = [...first.get(Work).started];
    expect((await done()).sort()).toEqual([...startedByFirst].sort());

    const second = await start();
    await eventually(async () => expect((await done()).sort()).toEqual([...ids].sort()), { timeoutMs: 15_000 });
    // Nothing the first instance finished was done again by the second.
    expect(second.get(Work).started.filter((id) => startedByFirst.includes(id))).toEqual([]);
    await consistently(async () => expect(await done()).toHaveLength(6), { forMs: 500 });
  });

  it('gives the deliveries it holds but never started back to the queue at once, for another instance, while its running call finishes', async () => {
    const startGated = async () => {
      const app = await startTestApp(ns, { providers: [GatedHandler], options: { consumer: { shutdownTimeoutMs: 20_000 } } });
      apps.push(app);
      return app;
    };
    const first = await startGated();
    let open = (): void => undefined;
    first.get(GatedHandler).gate = new Promise<void>((resolve) => (open = resolve));
    await first.get(IntegrationEventPublisher).publish([1, 2, 3].map((n) => new GatedIntegrationEvent(`g-${n}`)), { standalone: true });
    // One call runs (held at the gate); the two other deliveries wait in this instance for its slot.
    await eventually(() => expect(first.get(GatedHandler).started).toHaveLength(1));
    const second = await startGated();
    const closing = apps.splice(apps.indexOf(first), 1)[0]!.close();
    try {
      // Handled by the second instance while the first's call is still at the gate (its close waits up to 20 s).
      await eventually(() => expect(second.get(GatedHandler).started).toHaveLength(2), { timeoutMs: 3_000 });
    } finally {
      open();
      await closing;
    }
    expect([...first.get(GatedHandler).started, ...second.get(GatedHandler).started].sort()).toEqual(['g-1', 'g-2', 'g-3']);
    await consistently(() => expect(second.get(GatedHandler).started).toHaveLength(2), { forMs: 300 });
  });

  it("waits, at app.close(), for a drain the application started itself (a preStop hook's stop()), before closing the connections", async () => {
    const app = await start();
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('o-own-drain'), { standalone: true });
    await eventually(() => expect(app.get(Work).started).toEqual([id]));
    // The application's own drain, then the shutdown arrives while it runs.
    const ownDrain = app.get(IntegrationEventConsumers).stop();
    await apps.splice(0, 1)[0]!.close();
    await ownDrain;
    // The call finished and committed on open connections, and its message was acknowledged.
    expect(await done()).toContain(id);
    expect(await ns.queueDepth(`${ns.serviceName}.SlowHandler`)).toBe(0);
  });

  it('leaves no timer of a call that never settles keeping the process alive once app.close() returns', async () => {
    const app = await startTestApp(ns, { providers: [Hangs], options: { consumer: { shutdownTimeoutMs: 300, handlerTimeoutMs: 60_000 } } });
    apps.push(app);
    // The timers of about a minute made from now on: the call's timeout among them.
    const longTimers: NodeJS.Timeout[] = [];
    const setTimer = global.setTimeout;
    const spy = jest.spyOn(global, 'setTimeout').mockImplementation(((callback: () => void, ms?: number) => {
      const timer = setTimer(callback, ms);
      if ((ms ?? 0) > 50_000) longTimers.push(timer);
      return timer;
    }) as typeof setTimeout);
    try {
      await app.get(IntegrationEventPublisher).publish(new HangsIntegrationEvent('forever'), { standalone: true });
      await eventually(() => expect(app.get(Hangs).calls).toBe(1));
      await apps.splice(0, 1)[0]!.close();
    } finally {
      spy.mockRestore();
    }
    // The call still hangs (its drain was given up after 300 ms); its 60 s timeout holds nothing open.
    expect(longTimers.length).toBeGreaterThan(0);
    expect(longTimers.filter((timer) => timer.hasRef())).toEqual([]);
    for (const timer of longTimers) clearTimeout(timer);
  });

  /**
   * Starts an application whose PackParcel handler (with the cqrs bridge, CqrsModule imported after this
   * library's module) gets an order, and closes it while the handler runs.
   */
  const closeWhilePacking = async (providers: Provider[], orderId: string) => {
    const app = await startTestApp(ns, {
      imports: [CqrsModule.forRoot()],
      providers: [Work, PackParcel, ...providers],
      options: { consumer: { shutdownTimeoutMs: 5_000 } },
    });
    apps.push(app);
    await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent(orderId), { standalone: true });
    await eventually(() => expect(app.get(Work).started).toHaveLength(1));
    await apps.splice(apps.indexOf(app), 1)[0]!.close();
    return app;
  };

  it('keeps the cqrs bridge for the handlers it drains: their domain events still become integration events', async () => {
    await closeWhilePacking([ParcelPackedConverter], 'packed-at-shutdown');
    const packed = (await ns.outboxRows()).filter((row) => row.event_name === 'shipping.parcel-packed');
    expect(packed).toHaveLength(1);
  });

  it('keeps the EventBus subscribed until the handlers it drains are done: their domain events still reach the sagas', async () => {
    // CqrsModule imported after this library's module: Nest shuts it down first, and its EventBus would
    // end every saga's and handler's subscription before the drain.
    const app = await closeWhilePacking([PackingSagas], 'watched-at-shutdown');
    expect(app.get(PackingSagas).seen).toEqual(['watched-at-shutdown']);
  });

  it('handles and converts the domain events of a transaction still open when the module unhooks, before and after', async () => {
    const app = await startTestApp(ns, { imports: [CqrsModule.forRoot()], providers: [ParcelPackedConverter] });
    // Closed by the test; by the afterEach if the test fails first.
    apps.push(app);
    const txHost = app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
    const eventBus = app.get(EventBus);
    // A job a later module's shutdown waits for: it raised a domain event, and awaits something across the shutdown.
    let raised = (): void => undefined;
    const raisedOne = new Promise<void>((resolve) => (raised = resolve));
    let resume = (): void => undefined;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    const job = txHost.withTransaction(async () => {
      eventBus.publish(new ParcelPackedDomainEvent('packed-before-unhook'));
      raised();
      await resumed;
      eventBus.publish(new ParcelPackedDomainEvent('packed-after-unhook'));
    });
    // Another, open across the shutdown too, that raises its first domain event only after it.
    let opened = (): void => undefined;
    const openedOne = new Promise<void>((resolve) => (opened = resolve));
    const lateJob = txHost.withTransaction(async () => {
      await txHost.tx.query('SELECT 1');
      opened();
      await resumed;
      eventBus.publish(new ParcelPackedDomainEvent('packed-by-a-late-job'));
    });
    await openedOne;
    await raisedOne;
    // TypeORM's own shutdown waits for the job here, as a slower hook of the application's between the
    // library's and TypeORM's would.
    const dataSource = app.get(DataSource);
    // An application's subscriber, after the bridge's: it hears both jobs' commits, the last of which
    // lets the bridge unhook (inside TypeORM's loop over the subscribers).
    const commits: string[] = [];
    dataSource.subscribers.push({
      afterTransactionCommit: (event: { queryRunner: { isTransactionActive: boolean } }) => {
        if (!event.queryRunner.isTransactionActive) commits.push('commit');
      },
    } as never);
    const destroy = dataSource.destroy.bind(dataSource);
    jest.spyOn(dataSource, 'destroy').mockImplementation(async () => {
      resume();
      await Promise.all([job, lateJob]);
      return destroy();
    });
    await apps.splice(apps.indexOf(app), 1)[0]!.close();
    await Promise.all([job, lateJob]);
    const packed = (await ns.outboxRows()).filter((row) => row.event_name === 'shipping.parcel-packed');
    expect(packed).toHaveLength(3);
    expect(commits).toEqual(['commit', 'commit']);
  });

  /**
   * Holds the next connection the DataSource's pool is asked for until `release()`: then it is made, or
   * fails with `failure`. `asked` settles when it is asked for.
   */
  const holdNextConnect = (dataSource: DataSource, failure?: Error) => {
    const driver = dataSource.driver as unknown as { obtainMasterConnection(): Promise<unknown> };
    const obtain = driver.obtainMasterConnection.bind(driver);
    let asked = (): void => undefined;
    let release = (): void => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const askedFor = new Promise<void>((resolve) => (asked = resolve));
    jest.spyOn(driver, 'obtainMasterConnection').mockImplementationOnce(async () => {
      asked();
      await released;
      if (failure) throw failure;
      return obtain();
    });
    return { asked: askedFor, release };
  };

  /** The relay and the cleanup off: the only caller of the pool after boot is the transaction under test. */
  const quietOptions = { relay: { enabled: false }, cleanup: { enabled: false } };

  it('converts the domain events of a transaction that was still getting its pool connection when the module unhooked', async () => {
    const app = await startTestApp(ns, { imports: [CqrsModule.forRoot()], providers: [ParcelPackedConverter], options: quietOptions });
    apps.push(app);
    const txHost = app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
    const eventBus = app.get(EventBus);
    const dataSource = app.get(DataSource);
    // The pool opening a new client for it (a TCP or TLS connect at shutdown): the transaction has begun,
    // but it is neither a connected query runner nor a caller waiting in a full pool.
    const connect = holdNextConnect(dataSource);
    const job = txHost.withTransaction(async () => {
      eventBus.publish(new ParcelPackedDomainEvent('packed-once-connected'));
    });
    await connect.asked;
    const destroy = dataSource.destroy.bind(dataSource);
    jest.spyOn(dataSource, 'destroy').mockImplementation(async () => {
      connect.release();
      await job;
      return destroy();
    });
    await apps.splice(apps.indexOf(app), 1)[0]!.close();
    await job;
    const { rows } = await (await ns.sql()).query(`SELECT payload FROM ${ns.outboxTable} WHERE event_name = 'shipping.parcel-packed'`);
    expect(rows.map((row: { payload: string }) => JSON.parse(row.payload).orderId)).toEqual(['packed-once-connected']);
  });

  it('unhooks the cqrs bridge after a transaction it waited for failed to get its connection, which TypeORM never reports ended', async () => {
    const app = await startTestApp(ns, { imports: [CqrsModule.forRoot()], providers: [ParcelPackedConverter], options: quietOptions });
    apps.push(app);
    const txHost = app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
    const dataSource = app.get(DataSource);
    // The database going away at shutdown: the new client's connect fails, START TRANSACTION and then
    // the ROLLBACK fail with it, and TypeORM releases the query runner without an end of the transaction.
    const connect = holdNextConnect(dataSource, new Error('connect ECONNREFUSED (the database is going away)'));
    const job = txHost.withTransaction(async () => undefined);
    await connect.asked;
    const bridged = () => dataSource.subscribers.some((subscriber) => subscriber.constructor.name === 'DomainEventsTransactionSubscriber');
    expect(bridged()).toBe(true);
    await apps.splice(apps.indexOf(app), 1)[0]!.close();
    // Waiting for that transaction, which has begun.
    expect(bridged()).toBe(true);
    connect.release();
    await expect(job).rejects.toThrow('ECONNREFUSED');
    await eventually(() => expect(bridged()).toBe(false));
  });

  it('lets the relay finish its batch: rows are either sent or still pending, never lost', async () => {
    const probe = await ns.probe('ordering.order-created');
    const app = await start();
    await ns.insertOutboxRows(2_000);
    await eventually(async () => expect((await ns.outboxRows()).some((row) => row.status === 'sent')).toBe(true));
    await apps.splice(apps.indexOf(app), 1)[0]!.close();
    const rows = await ns.outboxRows();
    expect(rows.filter((row) => row.status !== 'sent' && row.status !== 'pending')).toEqual([]);
    // Every row marked sent is on the broker: confirmed before it was marked, never marked and dropped.
    const sent = rows.filter((row) => row.status === 'sent').map((row) => row.id);
    const published = () => new Set(probe.messages.map((message) => message.properties.messageId as string));
    await eventually(() => expect(sent.filter((id) => !published().has(id))).toEqual([]));
    // Nothing is left leased by the stopped relay: the next instance sends the rest at once.
    const leased = (await (await ns.sql()).query(`SELECT count(*)::int AS n FROM ${ns.outboxTable} WHERE locked_until > now()`)).rows[0].n;
    expect(leased).toBe(0);
  });
});
