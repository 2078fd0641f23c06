import { Global, Injectable, Logger, Module, type ModuleMetadata, type OnApplicationBootstrap, type OnModuleInit, Scope } from '@nestjs/common';
import { CqrsModule, CommandBus, CommandHandler, EventBus, EventsHandler, type ICommandHandler, type IEventHandler, type IEventPublisher } from '@nestjs/cqrs';
import type { TestingModule } from '@nestjs/testing';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Propagation, TransactionHost } from '@nestjs-cls/transactional';
import { ClsPluginTransactional } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { ClsModule } from 'nestjs-cls';
import { DataSource, type EntityManager, type EntitySubscriberInterface, type QueryRunner, type TransactionCommitEvent } from 'typeorm';
import {
  DomainEventDispatchDepthError,
  DomainEventOutsideTransactionError,
  IntegrationEventConverter,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  IntegrationEventsModule,
  type IntegrationEventContext,
  InvalidIntegrationEventConverterError,
  TransactionAbortedError,
  TransactionsNotConfiguredError,
  type IIntegrationEventConverter,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import {
  DomainProbe,
  NotifyWarehouseHandler,
  OrderFlaggedDomainEvent,
  OrderFlaggedDomainEventHandler,
  OrderPlacedDomainEvent,
  OrderPlacedDomainEventHandler,
  PlaceOrderCommand,
  PlaceOrderHandler,
  WarehouseSaga,
} from './fixtures/ordering-domain';
import { CapturingLogger } from './support/capturing-logger';
import { consistently, eventually } from './support/eventually';
import { TEST_DATABASE_URL } from './support/services';
import { bootMessage, startTestApp, testOptions, transactionsOnAnotherDataSource } from './support/test-app';
import { TestNamespace } from './support/test-namespace';
import { DomainEventsTransactionSubscriber } from '../libs/integration-events/src/cqrs/domain-events-transaction.subscriber';

class PingDomainEvent {
  constructor(readonly n: number) {}
}

class TenantNotedDomainEvent {
  constructor(readonly note: string) {}
}

/** A request-scoped provider: a handler depending on it is request-scoped too. */
@Injectable({ scope: Scope.REQUEST })
class RequestTenant {
  readonly id = 'tenant-1';
}

@Injectable()
class TenantNoteLog {
  readonly noted: Array<{ note: string; tenant: string; inTransaction: boolean }> = [];
}

@EventsHandler(TenantNotedDomainEvent)
class TenantNotedHandler implements IEventHandler<TenantNotedDomainEvent> {
  constructor(
    private readonly tenant: RequestTenant,
    private readonly log: TenantNoteLog,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}

  handle(event: TenantNotedDomainEvent): void {
    this.log.noted.push({ note: event.note, tenant: this.tenant.id, inTransaction: this.txHost.isTransactionActive() });
  }
}

class NoteOrderCommand {
  constructor(readonly orderId: string) {}
}

@CommandHandler(NoteOrderCommand)
class NoteOrderHandler implements ICommandHandler<NoteOrderCommand> {
  readonly noted: string[] = [];

  async execute(command: NoteOrderCommand): Promise<void> {
    this.noted.push(command.orderId);
  }
}

/** An integration-event handler that sends a command, as a consuming service does. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class NotesOrders {
  readonly calls: Array<{ orderId: string; attempt: number }> = [];

  constructor(private readonly commands: CommandBus) {}

  async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.calls.push({ orderId: event.orderId, attempt: context.attempt });
    await this.commands.execute(new NoteOrderCommand(event.orderId));
  }
}

class OrderNotedDomainEvent {
  constructor(readonly orderId: string) {}
}

@EventsHandler(OrderNotedDomainEvent)
class OrderNotedHandler implements IEventHandler<OrderNotedDomainEvent> {
  handle(): void {}
}

/** A feature module importing the plain CqrsModule: Nest bootstraps it after the (global) library. */
@Module({ imports: [CqrsModule], providers: [NoteOrderHandler, NotesOrders, OrderNotedHandler] })
class OrderNotesModule {}
class PongDomainEvent {
  constructor(readonly n: number) {}
}

/** Ping(n) → Pong(n+1) → Ping(n+2) → ... while n < 3: a chain from 0, a cycle from far below. */
@EventsHandler(PingDomainEvent)
class PingHandler implements IEventHandler<PingDomainEvent> {
  constructor(
    private readonly eventBus: EventBus,
    private readonly probe: DomainProbe,
  ) {}
  handle(event: PingDomainEvent): void {
    this.probe.pingPong.push(`ping ${event.n}`);
    if (event.n < 3) this.eventBus.publish(new PongDomainEvent(event.n + 1));
  }
}
@EventsHandler(PongDomainEvent)
class PongHandler implements IEventHandler<PongDomainEvent> {
  constructor(
    private readonly eventBus: EventBus,
    private readonly probe: DomainProbe,
  ) {}
  handle(event: PongDomainEvent): void {
    this.probe.pingPong.push(`pong ${event.n}`);
    if (event.n < 3) this.eventBus.publish(new PingDomainEvent(event.n + 1));
  }
}

class NestedPingDomainEvent {
  constructor(readonly n: number) {}
}
class NestedPongDomainEvent {
  constructor(readonly n: number) {}
}

/** NestedPing(n) → NestedPong(n+1) → ..., each raised in a savepoint of its handler, up to 50 levels deep. */
@EventsHandler(NestedPingDomainEvent)
class NestedPingHandler implements IEventHandler<NestedPingDomainEvent> {
  constructor(
    private readonly eventBus: EventBus,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}
  async handle(event: NestedPingDomainEvent): Promise<void> {
    await this.txHost.withTransaction(Propagation.Nested, async () => {
      if (event.n < 50) this.eventBus.publish(new NestedPongDomainEvent(event.n + 1));
    });
  }
}
@EventsHandler(NestedPongDomainEvent)
class NestedPongHandler implements IEventHandler<NestedPongDomainEvent> {
  constructor(
    private readonly eventBus: EventBus,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}
  async handle(event: NestedPongDomainEvent): Promise<void> {
    await this.txHost.withTransaction(Propagation.Nested, async () => {
      if (event.n < 50) this.eventBus.publish(new NestedPingDomainEvent(event.n + 1));
    });
  }
}

/** Domain event turned into integration events by a converter, with no handler code. */
class OrderShippedDomainEvent {
  constructor(
    readonly orderId: string,
    readonly parcels: number,
  ) {}
}

@IntegrationEventConverter(OrderShippedDomainEvent)
class OrderShippedConverter implements IIntegrationEventConverter<OrderShippedDomainEvent, OrderCreatedIntegrationEvent> {
  convert(event: OrderShippedDomainEvent): OrderCreatedIntegrationEvent[] {
    return Array.from({ length: event.parcels }, (_, i) => new OrderCreatedIntegrationEvent(`${event.orderId}/parcel-${i}`));
  }
}

/** A subclass: converted by its base class's converter, as a base's @EventsHandler receives it. */
class ExpressShippedDomainEvent extends OrderShippedDomainEvent {}

/** A subclass with a converter of its own: only that one applies. */
class ReturnShippedDomainEvent extends OrderShippedDomainEvent {}

@IntegrationEventConverter(ReturnShippedDomainEvent)
class ReturnShippedConverter implements IIntegrationEventConverter<ReturnShippedDomainEvent, OrderCreatedIntegrationEvent> {
  convert(event: ReturnShippedDomainEvent): OrderCreatedIntegrationEvent {
    return new OrderCreatedIntegrationEvent(`${event.orderId}/return`);
  }
}

/** A domain event whose converter returns whatever the event carries, right or wrong. */
class HandsBackDomainEvent {
  constructor(readonly give: unknown) {}
}

@IntegrationEventConverter(HandsBackDomainEvent)
class HandsBackConverter implements IIntegrationEventConverter<HandsBackDomainEvent, OrderCreatedIntegrationEvent> {
  convert(event: HandsBackDomainEvent): OrderCreatedIntegrationEvent {
    return event.give as OrderCreatedIntegrationEvent;
  }
}

class StockReservedDomainEvent {
  constructor(readonly orderId: string) {}
}

/** Runs a statement that fails and swallows the error: the transaction is left aborted. */
@EventsHandler(StockReservedDomainEvent)
class SwallowingStockHandler implements IEventHandler<StockReservedDomainEvent> {
  constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}
  async handle(): Promise<void> {
    await this.txHost.tx.query('SELECT 1 / 0').catch(() => undefined);
  }
}

@Injectable()
@IntegrationEventConverter(OrderPlacedDomainEvent)
class ConverterWithoutConvert {}

class ParcelPackedDomainEvent {
  constructor(
    readonly orderId: string,
    readonly fail = false,
  ) {}
}

@Injectable()
class PackingProbe {
  readonly handled: string[] = [];
}

@EventsHandler(ParcelPackedDomainEvent)
class ParcelPackedHandler implements IEventHandler<ParcelPackedDomainEvent> {
  constructor(private readonly probe: PackingProbe) {}
  handle(event: ParcelPackedDomainEvent): void {
    this.probe.handled.push(event.orderId);
    if (event.fail) throw new Error(`packing ${event.orderId} failed`);
  }
}

@IntegrationEventConverter(ParcelPackedDomainEvent)
class ParcelPackedConverter implements IIntegrationEventConverter<ParcelPackedDomainEvent, OrderCreatedIntegrationEvent> {
  convert(event: ParcelPackedDomainEvent): OrderCreatedIntegrationEvent {
    return new OrderCreatedIntegrationEvent(`${event.orderId}/packed`);
  }
}

/** A converter provided in the decorated one's place (`useClass`), as a test or a decorator would. */
class TracedParcelPackedConverter extends ParcelPackedConverter {
  readonly converted: string[] = [];
  override convert(event: ParcelPackedDomainEvent): OrderCreatedIntegrationEvent {
    this.converted.push(event.orderId);
    return super.convert(event);
  }
}

/** Publishes on the EventBus its module can inject. */
@Injectable()
class Packing {
  constructor(readonly eventBus: EventBus) {}
}

/** A feature module importing the plain CqrsModule, beside `CqrsModule.forRoot()`: it gets a bus of its own. */
@Module({ imports: [CqrsModule], providers: [Packing], exports: [Packing] })
class PackingModule {}

@Injectable()
class RootPacking {
  constructor(readonly eventBus: EventBus) {}
}

/** Wraps the EventBus's publisher in its `onModuleInit`, after the bridge installed its own: a tracing decorator, say. */
@Injectable()
class TracingPublisherDecorator implements OnModuleInit {
  readonly traced: object[] = [];
  constructor(private readonly eventBus: EventBus) {}
  onModuleInit(): void {
    const inner = this.eventBus.publisher;
    this.eventBus.publisher = {
      publish: (event: object, ...rest: unknown[]) => {
        this.traced.push(event);
        return (inner.publish as (...args: unknown[]) => unknown)(event, ...rest);
      },
    } as IEventPublisher;
  }
}

/**
 * Gives the EventBus the application's own publisher in its `onApplicationBootstrap`: Nest runs it after
 * this library's, whose module is global.
 */
@Injectable()
class PublisherSetAtBootstrap implements OnApplicationBootstrap {
  readonly own = new OwnEventPublisher();
  constructor(private readonly eventBus: EventBus) {}
  onApplicationBootstrap(): void {
    this.eventBus.publisher = this.own;
  }
}

/** Puts cqrs's default publisher back in its `onModuleInit`, which writes the bus's field without its setter. */
@Injectable()
class DefaultPublisherRestored implements OnModuleInit {
  constructor(private readonly eventBus: EventBus) {}
  onModuleInit(): void {
    (this.eventBus as unknown as { useDefaultPublisher(): void }).useDefaultPublisher();
  }
}

/** An application's own cqrs publisher (one that would send events to a broker, say). */
class OwnEventPublisher implements IEventPublisher {
  readonly published: object[] = [];
  publish(event: object): void {
    this.published.push(event);
  }
}

/** Item 1 and 2 of the cqrs bridge: domain events handled in their transaction; converters. */
/** A notice published outside any transaction, whose handler fails (plain cqrs: logged, not awaited). */
class StockNoticeEvent {
  constructor(readonly sku: string) {}
}

/** Raised in a transaction; its handler, in its synchronous part, publishes a StockNoticeEvent outside it. */
class StockCountedDomainEvent {
  constructor(readonly sku: string) {}
}

@Injectable()
class StockNoticeLog {
  readonly notices: string[] = [];
  readonly counted: string[] = [];
}

@EventsHandler(StockNoticeEvent)
class FailingStockNoticeHandler implements IEventHandler<StockNoticeEvent> {
  constructor(private readonly log: StockNoticeLog) {}
  async handle(event: StockNoticeEvent): Promise<void> {
    this.log.notices.push(event.sku);
    throw new Error(`the notice about ${event.sku} could not be sent`);
  }
}

@EventsHandler(StockCountedDomainEvent)
class StockCountedHandler implements IEventHandler<StockCountedDomainEvent> {
  constructor(
    private readonly log: StockNoticeLog,
    private readonly eventBus: EventBus,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}
  handle(event: StockCountedDomainEvent): Promise<void> {
    this.log.counted.push(event.sku);
    // Outside the transaction, in this handler's synchronous part.
    void this.txHost.withTransaction(Propagation.NotSupported, async () => this.eventBus.publish(new StockNoticeEvent(event.sku)));
    return Promise.resolve();
  }
}

/** Raised in a transaction that another commit hook of the application fails while this event's handler runs. */
class LedgerPostedDomainEvent {
  constructor(
    readonly entry: string,
    /** Whether the handler waits and writes in a savepoint of its own (`Propagation.Nested`). */
    readonly nested = false,
  ) {}
}

/** Raised after a LedgerPostedDomainEvent, in the same transaction. */
class LedgerClosedDomainEvent {
  constructor(readonly entry: string) {}
}

@Injectable()
class LedgerProbe {
  table = '';
  /** What PostsLedgerLine waits for before its statement. */
  gate: Promise<void> = Promise.resolve();
  /** Called by PostsLedgerLine as it begins to wait for the gate (in its savepoint, if nested). */
  onWaiting: () => void = () => undefined;
  /** Each PostsLedgerLine call, once its statement is answered: how it went. */
  readonly posted: string[] = [];
  readonly closed: string[] = [];
}

/** Waits for the probe's gate, then writes a row in the transaction. */
@EventsHandler(LedgerPostedDomainEvent)
class PostsLedgerLine implements IEventHandler<LedgerPostedDomainEvent> {
  constructor(
    private readonly probe: LedgerProbe,
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}
  async handle(event: LedgerPostedDomainEvent): Promise<void> {
    const post = async (): Promise<void> => {
      this.probe.onWaiting();
      await this.probe.gate;
      try {
        await this.txHost.tx.query(`INSERT INTO ${this.probe.table} (id) VALUES ($1)`, [event.entry]);
        this.probe.posted.push(`${event.entry}: written`);
      } catch (error) {
        this.probe.posted.push(`${event.entry}: ${(error as Error).message}`);
        throw error;
      }
    };
    if (event.nested) await this.txHost.withTransaction(Propagation.Nested, post);
    else await post();
  }
}

@EventsHandler(LedgerClosedDomainEvent)
class ClosesLedger implements IEventHandler<LedgerClosedDomainEvent> {
  constructor(private readonly probe: LedgerProbe) {}
  handle(event: LedgerClosedDomainEvent): void {
    this.probe.closed.push(event.entry);
  }
}

/**
 * Adds an application's own before-commit subscriber that calls `raise` only once the bridge's
 * before-commit hook of the same commit has returned (resolved or rejected): an event raised then is late
 * for certain, however long the bridge's handlers took, and still before the COMMIT, which TypeORM
 * holds until every before-commit subscriber's promise has settled. TypeORM calls the subscribers in
 * the order they were added, side by side: the bridge's, added at boot, before this one, which finds
 * the promise of the bridge's hook for its query runner. Returns what removes both.
 */
function raiseOnceTheBridgeIsDone(dataSource: DataSource, raise: (event: TransactionCommitEvent) => void | Promise<void>): () => void {
  const bridge = dataSource.subscribers.find((subscriber) => subscriber instanceof DomainEventsTransactionSubscriber);
  if (!(bridge instanceof DomainEventsTransactionSubscriber)) throw new Error('The bridge\'s subscriber is not among the DataSource\'s subscribers');
  const original = bridge.beforeTransactionCommit.bind(bridge);
  const bridgeDone = new WeakMap<QueryRunner, Promise<void>>();
  const spy = jest.spyOn(bridge, 'beforeTransactionCommit').mockImplementation((event) => {
    const done = original(event);
    bridgeDone.set(
      event.queryRunner,
      done.then(
        () => undefined,
        () => undefined,
      ),
    );
    return done;
  });
  const lateRaiser: EntitySubscriberInterface = {
    beforeTransactionCommit: async (event: TransactionCommitEvent) => {
      const done = bridgeDone.get(event.queryRunner);
      bridgeDone.delete(event.queryRunner);
      if (!done) throw new Error('The bridge\'s before-commit hook was not called before the late raiser\'s: the test would not test a late event');
      await done;
      await raise(event);
    },
  };
  dataSource.subscribers.push(lateRaiser);
  return () => {
    dataSource.subscribers.splice(dataSource.subscribers.indexOf(lateRaiser), 1);
    spy.mockRestore();
  };
}

/**
 * The tests on one application they share, booted once. They are kept apart from the tests that boot
 * applications of their own (the describe below): PlaceOrderHandler's @Transactional() finds its
 * TransactionHost through `TransactionHost.getInstance()`, one per process, the one the last application
 * booted constructed. An application booted (even one whose boot fails) while the shared one is up takes
 * that place, and once closed leaves @Transactional() on its closed DataSource ("Driver not Connected").
 * Jest runs each describe's tests together (in any order, with --randomize), between its beforeAll and
 * afterAll, so every application booted by the other describe is booted and closed before this one boots,
 * or after it is closed.
 */
describe('@nestjs/cqrs bridge', () => {
  let ns: TestNamespace;
  let app: TestingModule;
  let probe: DomainProbe;
  let txHost: TransactionHost<TransactionalAdapterTypeOrm>;
  let messages: Awaited<ReturnType<TestNamespace['probe']>>['messages'];

  beforeAll(async () => {
    ns = await TestNamespace.create();
    await (await ns.sql()).query(`CREATE TABLE "${ns.schema}".orders (id text PRIMARY KEY)`);
    messages = (await ns.probe('ordering.order-created')).messages;
    app = await startTestApp(ns, {
      imports: [CqrsModule.forRoot()],
      providers: [
        DomainProbe,
        PlaceOrderHandler,
        OrderPlacedDomainEventHandler,
        OrderFlaggedDomainEventHandler,
        NotifyWarehouseHandler,
        WarehouseSaga,
        PingHandler,
        PongHandler,
        NestedPingHandler,
        NestedPongHandler,
        OrderShippedConverter,
        ReturnShippedConverter,
        HandsBackConverter,
        SwallowingStockHandler,
        StockNoticeLog,
        FailingStockNoticeHandler,
        StockCountedHandler,
        LedgerProbe,
        PostsLedgerLine,
        ClosesLedger,
      ],
      options: { consumer: { enabled: false }, cqrs: { maxDispatchDepth: 5 } },
    });
    probe = app.get(DomainProbe);
    probe.table = `"${ns.schema}".orders`;
    app.get(LedgerProbe).table = probe.table;
    txHost = app.get(TransactionHost);
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  beforeEach(() => {
    // Says so at once if an application was booted in this describe after all (see above), instead of
    // letting the tests that place orders fail on a closed DataSource.
    if (TransactionHost.getInstance<TransactionalAdapterTypeOrm>() !== txHost) {
      throw new Error('@Transactional() would not run on the shared application: another one was booted since (boot it in the describe below)');
    }
    probe.failWith = undefined;
    probe.placedHandled.length = 0;
    probe.flaggedHandled.length = 0;
    probe.warehouseNotified.length = 0;
    probe.pingPong.length = 0;
  });

  const orderRows = async (id: string) =>
    (await (await ns.sql()).query(`SELECT id FROM "${ns.schema}".orders WHERE id = $1`, [id])).rowCount;
  const outboxPayloads = async () => (await (await ns.sql()).query(`SELECT payload FROM ${ns.outboxTable}`)).rows.map((r: { payload: string }) => JSON.parse(r.payload).orderId);
  const delivered = () => messages.map((m) => JSON.parse(m.content.toString()).orderId as string);

  it('handles an aggregate\'s domain event before the commit, in the same transaction, and delivers its integration event', async () => {
    await app.get(CommandBus).execute(new PlaceOrderCommand('o-1'));
    // The command resolved: the handler has already run, inside the transaction, seeing its uncommitted row.
    expect(probe.placedHandled).toEqual([{ orderId: 'o-1', inTransaction: true, rowVisibleInTransaction: true }]);
    expect(await outboxPayloads()).toContain('o-1');
    await eventually(() => expect(delivered()).toContain('o-1'));
    // After the commit the event went down the EventBus stream: the saga saw it once, the handler did not run again.
    await eventually(() => expect(probe.warehouseNotified).toEqual(['o-1']));
    await consistently(() => expect(probe.placedHandled).toHaveLength(1), { forMs: 300 });
  });

  it('rolls back the business row and the outbox row when a domain-event handler throws', async () => {
    probe.failWith = new Error('credit limit exceeded');
    await expect(app.get(CommandBus).execute(new PlaceOrderCommand('o-fails'))).rejects.toThrow('credit limit exceeded');
    expect(probe.placedHandled.map((h) => h.orderId)).toEqual(['o-fails']);
    expect(await orderRows('o-fails')).toBe(0);
    expect(await outboxPayloads()).not.toContain('o-fails');
    // A later committed order arrives; the failed one never does, and sagas never saw it.
    probe.failWith = undefined;
    await app.get(CommandBus).execute(new PlaceOrderCommand('o-after'));
    await eventually(() => expect(delivered()).toContain('o-after'));
    await eventually(() => expect(probe.warehouseNotified).toEqual(['o-after']));
    expect(delivered()).not.toContain('o-fails');
  });

  it('follows domain events raised by handlers, within the same transaction, until none is left', async () => {
    await txHost.withTransaction(async () => {
      app.get(EventBus).publishAll([new OrderFlaggedDomainEvent('f-1'), new OrderFlaggedDomainEvent('f-2')]);
      app.get(EventBus).publish(new PingDomainEvent(0));
    });
    expect(probe.flaggedHandled).toEqual(['f-1', 'f-2']);
    expect(probe.pingPong).toEqual(['ping 0', 'pong 1', 'ping 2', 'pong 3']);
    // After the commit, the stream carries them to nobody else: no handler ran twice.
    await consistently(() => expect(probe.pingPong).toHaveLength(4), { forMs: 200 });
  });

  it('stops a cycle of domain events at the depth limit and rolls everything back', async () => {
    const attempt = txHost.withTransaction(async () => {
      await txHost.tx.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ('o-cycle')`);
      app.get(EventBus).publish(new PingDomainEvent(-1_000));
    });
    await expect(attempt).rejects.toBeInstanceOf(DomainEventDispatchDepthError);
    await expect(attempt).rejects.toThrow(/after 5 rounds.*waiting: (Ping|Pong)DomainEvent/);
    expect(await orderRows('o-cycle')).toBe(0);
  });

  it('counts the rounds of savepoints released inside handlers with their enclosing ones: a cycle through them stops at the limit', async () => {
    const attempt = txHost.withTransaction(async () => {
      await txHost.tx.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ('o-nested-cycle')`);
      app.get(EventBus).publish(new NestedPingDomainEvent(0));
    });
    // Each release dispatches its own rounds; counted apart, each would be round 1 and the chain would
    // go its 50 levels (for ever, had the handlers no bound).
    await expect(attempt).rejects.toBeInstanceOf(DomainEventDispatchDepthError);
    await expect(attempt).rejects.toThrow(/after 5 rounds.*waiting: Nested(Ping|Pong)DomainEvent/);
    expect(await orderRows('o-nested-cycle')).toBe(0);
  });

  it('gives a domain event raised while its transaction commits to its handlers after the commit, and refuses a converter-backed one', async () => {
    const dataSource = app.get(DataSource);
    const eventBus = app.get(EventBus);
    // Code the transaction's work did not await (an application's own before-commit subscriber here)
    // raises a domain event once the bridge has handled the transaction's: too late to handle it in it.
    let raise: () => void = () => undefined;
    const removeLateRaiser = raiseOnceTheBridgeIsDone(dataSource, () => raise());
    try {
      raise = () => eventBus.publish(new OrderFlaggedDomainEvent('late-flag'));
      await txHost.withTransaction(async () => {
        await txHost.tx.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ('o-late-plain')`);
      });
      raise = () => undefined;
      // Not dropped: its handler runs once, after the commit, as plain cqrs would run it.
      await eventually(() => expect(probe.flaggedHandled).toEqual(['late-flag']));
      await consistently(() => expect(probe.flaggedHandled).toHaveLength(1), { forMs: 200 });
      // One with a converter cannot have its integration event written any more: refused, nothing kept.
      raise = () => eventBus.publish(new OrderShippedDomainEvent('late-shipped', 1));
      const attempt = txHost.withTransaction(async () => {
        await txHost.tx.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ('o-late-converted')`);
      });
      await expect(attempt).rejects.toThrow(/OrderShippedDomainEvent has an @IntegrationEventConverter but was published while its transaction was committing/);
      await expect(attempt).rejects.toBeInstanceOf(DomainEventOutsideTransactionError);
      expect(await orderRows('o-late-converted')).toBe(0);
      expect(await outboxPayloads()).not.toContain('late-shipped/parcel-0');
    } finally {
      removeLateRaiser();
    }
  });

  it('runs the handlers of an event object published outside a transaction while a transaction that handled it is still open', async () => {
    const eventBus = app.get(EventBus);
    // A constant instance: handled at a savepoint's release, in a transaction that then stays open.
    const constant = new OrderFlaggedDomainEvent('constant');
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const transaction = txHost.withTransaction(async () => {
      await txHost.withTransaction(Propagation.Nested, async () => {
        eventBus.publish(constant);
      });
      await held;
    });
    try {
      await eventually(() => expect(probe.flaggedHandled).toEqual(['constant']));
      // Published outside any transaction meanwhile: plain cqrs, its handler runs at once.
      eventBus.publish(constant);
      await eventually(() => expect(probe.flaggedHandled).toEqual(['constant', 'constant']));
    } finally {
      release();
      await transaction;
    }
    // The transaction's forward after its commit runs no handler again.
    await consistently(() => expect(probe.flaggedHandled).toHaveLength(2), { forMs: 200 });
  });

  it('sends a transaction\'s events down the stream in the order they were raised, a savepoint\'s included', async () => {
    const eventBus = app.get(EventBus);
    const streamed: string[] = [];
    const subscription = eventBus.subscribe((event) => {
      if (event instanceof OrderFlaggedDomainEvent && event.orderId.startsWith('in-order-')) streamed.push(event.orderId);
    });
    try {
      await txHost.withTransaction(async () => {
        eventBus.publish(new OrderFlaggedDomainEvent('in-order-1'));
        await txHost.withTransaction(Propagation.Nested, async () => {
          eventBus.publish(new OrderFlaggedDomainEvent('in-order-2'));
        });
      });
      // Handled at the savepoint's release first, then at the commit...
      expect(probe.flaggedHandled).toEqual(['in-order-2', 'in-order-1']);
      // ...but streamed, after the commit, as raised.
      await eventually(() => expect(streamed).toEqual(['in-order-1', 'in-order-2']));
    } finally {
      subscription.unsubscribe();
    }
  });

  it('runs the handlers of a late domain event that is the same object as one handled in the transaction, and of none a rolled-back savepoint raised late', async () => {
    const dataSource = app.get(DataSource);
    const eventBus = app.get(EventBus);
    let raise: (manager: EntityManager) => Promise<void> = async () => undefined;
    const removeLateRaiser = raiseOnceTheBridgeIsDone(dataSource, (event) => raise(event.manager));
    try {
      // A constant instance, handled in the transaction and raised again, late, by code it did not await.
      const constant = new OrderFlaggedDomainEvent('constant-late');
      raise = async () => {
        eventBus.publish(constant);
      };
      await txHost.withTransaction(async () => {
        eventBus.publish(constant);
      });
      raise = async () => undefined;
      await eventually(() => expect(probe.flaggedHandled).toEqual(['constant-late', 'constant-late']));
      // Raised late in a savepoint that then rolls back: it never happened.
      probe.flaggedHandled.length = 0;
      raise = async (manager) => {
        await manager
          .transaction(async () => {
            eventBus.publish(new OrderFlaggedDomainEvent('late-rolled-back'));
            throw new Error('undone');
          })
          .catch(() => undefined);
      };
      await txHost.withTransaction(async () => {
        await txHost.tx.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ('o-late-savepoint')`);
      });
      raise = async () => undefined;
      expect(await orderRows('o-late-savepoint')).toBe(1);
      await consistently(() => expect(probe.flaggedHandled).toEqual([]), { forMs: 300 });
    } finally {
      removeLateRaiser();
    }
  });

  it('does not make the transaction await the handlers of an event a handler publishes outside it (plain cqrs: not awaited)', async () => {
    const log = app.get(StockNoticeLog);
    await txHost.withTransaction(async () => {
      app.get(EventBus).publish(new StockCountedDomainEvent('sku-1'));
    });
    expect(log.counted).toEqual(['sku-1']);
    // The notice's handler ran, and failed, outside the transaction, which committed all the same.
    await eventually(() => expect(log.notices).toEqual(['sku-1']));
  });

  it('leaves cqrs as it was outside a transaction: handlers run, not awaited, no transaction', async () => {
    app.get(EventBus).publish(new OrderPlacedDomainEvent('o-outside'));
    await eventually(() =>
      expect(probe.placedHandled).toEqual([{ orderId: 'o-outside', inTransaction: false, rowVisibleInTransaction: false }]),
    );
    await eventually(() => expect(probe.warehouseNotified).toEqual(['o-outside']));
  });

  it('publishes a converter\'s integration events in the transaction that raised the domain event', async () => {
    await txHost.withTransaction(async () => {
      app.get(EventBus).publish(new OrderShippedDomainEvent('o-ship', 2));
    });
    expect(await outboxPayloads()).toEqual(expect.arrayContaining(['o-ship/parcel-0', 'o-ship/parcel-1']));
    await eventually(() => expect(delivered()).toEqual(expect.arrayContaining(['o-ship/parcel-0', 'o-ship/parcel-1'])));

    await expect(
      txHost.withTransaction(async () => {
        app.get(EventBus).publish(new OrderShippedDomainEvent('o-ship-rolled-back', 1));
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(await outboxPayloads()).not.toContain('o-ship-rolled-back/parcel-0');
  });

  it('fails the commit when a domain-event handler left the transaction aborted: no integration event, no saga', async () => {
    const attempt = txHost.withTransaction(async () => {
      await txHost.tx.query(`INSERT INTO ${probe.table} (id) VALUES ($1)`, ['o-swallowed']);
      const eventBus = app.get(EventBus);
      eventBus.publish(new OrderPlacedDomainEvent('o-swallowed'));
      eventBus.publish(new OrderShippedDomainEvent('o-swallowed', 1));
      eventBus.publish(new StockReservedDomainEvent('o-swallowed'));
    });
    await expect(attempt).rejects.toThrow(TransactionAbortedError);
    // The handlers ran (and wrote the outbox rows) before the commit, which failed instead of rolling back silently.
    expect(probe.placedHandled.map((h) => h.orderId)).toEqual(['o-swallowed']);
    expect(await orderRows('o-swallowed')).toBe(0);
    expect(await outboxPayloads()).not.toEqual(expect.arrayContaining(['o-swallowed']));
    await app.get(CommandBus).execute(new PlaceOrderCommand('o-after-swallowed'));
    await eventually(() => expect(delivered()).toContain('o-after-swallowed'));
    await eventually(() => expect(probe.warehouseNotified).toEqual(['o-after-swallowed']));
    expect(delivered().filter((id) => id.startsWith('o-swallowed'))).toEqual([]);
  });

  it("sends nothing down the stream when PostgreSQL answers the COMMIT with ROLLBACK (an application's commit hook caught a failed statement)", async () => {
    await (await ns.sql()).query(`INSERT INTO ${probe.table} (id) VALUES ('hook-duplicate')`);
    // An "audit must never break business" hook, running side by side with the bridge's: its statement
    // goes once the bridge's handlers and check are done (a turn of the event loop later), and fails.
    const swallowing: EntitySubscriberInterface = {
      async beforeTransactionCommit(event: TransactionCommitEvent) {
        await new Promise((resolve) => setImmediate(resolve));
        await event.queryRunner.query(`INSERT INTO ${probe.table} (id) VALUES ('hook-duplicate')`).catch(() => undefined);
      },
    };
    const streamed: string[] = [];
    const subscription = app.get(EventBus).subscribe((event) => {
      if (event instanceof OrderFlaggedDomainEvent) streamed.push(event.orderId);
    });
    const dataSource = app.get(DataSource);
    const warn = jest.spyOn(Logger.prototype, 'warn');
    dataSource.subscribers.push(swallowing);
    try {
      // No error: TypeORM does not look at what PostgreSQL answered the COMMIT.
      await txHost.withTransaction(async () => {
        await txHost.tx.query(`INSERT INTO ${probe.table} (id) VALUES ($1)`, ['o-hook-swallowed']);
        app.get(EventBus).publish(new OrderFlaggedDomainEvent('o-hook-swallowed'));
      });
      expect(probe.flaggedHandled).toEqual(['o-hook-swallowed']);
      expect(await orderRows('o-hook-swallowed')).toBe(0);
      expect(warn.mock.calls.map(([message]) => String(message))).toContainEqual(
        expect.stringContaining('A transaction that raised domain events was rolled back by PostgreSQL at its COMMIT'),
      );
      // A transaction that commits after it streams its event: the one before would have been streamed first.
      dataSource.subscribers.splice(dataSource.subscribers.indexOf(swallowing), 1);
      await txHost.withTransaction(async () => {
        app.get(EventBus).publish(new OrderFlaggedDomainEvent('o-after-hook'));
      });
      await eventually(() => expect(streamed).toContain('o-after-hook'));
      expect(streamed).toEqual(['o-after-hook']);
    } finally {
      if (dataSource.subscribers.includes(swallowing)) dataSource.subscribers.splice(dataSource.subscribers.indexOf(swallowing), 1);
      subscription.unsubscribe();
      warn.mockRestore();
    }
  });

  it.each([
    ['in the transaction', false],
    ['in a savepoint of its own', true],
  ])('lets the domain-event handler under way finish %s when another commit hook of the application fails, and starts none after it', async (_, nested) => {
    const ledger = app.get(LedgerProbe);
    ledger.posted.length = 0;
    ledger.closed.length = 0;
    const id = nested ? 'o-ledger-nested' : 'o-ledger';
    let openGate!: () => void;
    ledger.gate = new Promise<void>((resolve) => (openGate = resolve));
    const handlerWaiting = new Promise<void>((resolve) => (ledger.onWaiting = resolve));
    // TypeORM runs the commit hooks side by side and rolls back as soon as one throws: this one throws
    // once the handler waits (its savepoint open, if nested), and the handler goes on once that rollback
    // has begun. Only the transaction's commit fails, not the savepoint's release.
    let failed = false;
    const failingAudit: EntitySubscriberInterface = {
      beforeTransactionCommit: async () => {
        if (failed) return;
        failed = true;
        await handlerWaiting;
        throw new Error('the audit trail is full');
      },
      beforeTransactionRollback: () => openGate(),
    };
    const streamed: string[] = [];
    const subscription = app.get(EventBus).subscribe((event) => {
      if (event instanceof LedgerPostedDomainEvent || event instanceof LedgerClosedDomainEvent) streamed.push(event.entry);
    });
    const dataSource = app.get(DataSource);
    dataSource.subscribers.push(failingAudit);
    try {
      const attempt = txHost.withTransaction(async () => {
        await txHost.tx.query(`INSERT INTO ${probe.table} (id) VALUES ($1)`, [id]);
        const eventBus = app.get(EventBus);
        eventBus.publish(new LedgerPostedDomainEvent(`${id}/line`, nested));
        eventBus.publish(new LedgerClosedDomainEvent(id));
        eventBus.publish(new OrderShippedDomainEvent(id, 1));
      });
      await expect(attempt).rejects.toThrow('the audit trail is full');
      // The handler under way wrote its row in the transaction, before the ROLLBACK: the row went with it.
      expect(ledger.posted).toEqual([`${id}/line: written`]);
      // Nothing started after it: not the next handler, not the converter, not the stream.
      await consistently(() => {
        expect(ledger.closed).toEqual([]);
        expect(streamed).toEqual([]);
      });
    } finally {
      dataSource.subscribers.splice(dataSource.subscribers.indexOf(failingAudit), 1);
      subscription.unsubscribe();
      ledger.gate = Promise.resolve();
      ledger.onWaiting = () => undefined;
    }
    // The same events in a transaction nothing fails: handled in it, committed. (It runs on the pool's
    // last connection back, which a transaction left open there would make part of it.)
    await txHost.withTransaction(async () => {
      app.get(EventBus).publish(new LedgerPostedDomainEvent(`${id}-2/line`, nested));
      app.get(EventBus).publish(new LedgerClosedDomainEvent(`${id}-2`));
    });
    expect(await orderRows(`${id}-2/line`)).toBe(1);
    expect(ledger.closed).toEqual([`${id}-2`]);
    expect(await orderRows(`${id}/line`)).toBe(0);
    expect(await orderRows(id)).toBe(0);
    expect(await outboxPayloads()).not.toContain(`${id}/parcel-0`);
  });

  it("rolls back another commit hook's own savepoint alone, while domain-event handlers run: the transaction still commits", async () => {
    const ledger = app.get(LedgerProbe);
    ledger.posted.length = 0;
    ledger.closed.length = 0;
    let openGate!: () => void;
    ledger.gate = new Promise<void>((resolve) => (openGate = resolve));
    const handlerWaiting = new Promise<void>((resolve) => (ledger.onWaiting = resolve));
    // An "audit must never break business" hook: once the handler waits, it tries a statement in a
    // savepoint of its own, which fails and is rolled back, and catches that.
    let audited = false;
    const auditInSavepoint: EntitySubscriberInterface = {
      beforeTransactionCommit: async (event: TransactionCommitEvent) => {
        if (audited) return;
        audited = true;
        await handlerWaiting;
        await event.manager.transaction(async (manager) => manager.query('SELECT 1 / 0')).catch(() => undefined);
      },
      // The handler goes on once that savepoint is rolled back (its statements would otherwise meet the
      // failed one's aborted savepoint: the hook and the handlers share the connection).
      afterTransactionRollback: () => openGate(),
    };
    const dataSource = app.get(DataSource);
    dataSource.subscribers.push(auditInSavepoint);
    try {
      await txHost.withTransaction(async () => {
        await txHost.tx.query(`INSERT INTO ${probe.table} (id) VALUES ($1)`, ['o-audited']);
        app.get(EventBus).publish(new LedgerPostedDomainEvent('o-audited/line'));
        app.get(EventBus).publish(new LedgerClosedDomainEvent('o-audited'));
      });
    } finally {
      dataSource.subscribers.splice(dataSource.subscribers.indexOf(auditInSavepoint), 1);
      ledger.gate = Promise.resolve();
      ledger.onWaiting = () => undefined;
    }
    expect(ledger.posted).toEqual(['o-audited/line: written']);
    expect(ledger.closed).toEqual(['o-audited']);
    expect(await orderRows('o-audited')).toBe(1);
    expect(await orderRows('o-audited/line')).toBe(1);
  });

  it('leaves no unhandled rejection when a commit hook after the bridge throws at once while domain-event handlers run', async () => {
    const ledger = app.get(LedgerProbe);
    ledger.posted.length = 0;
    let openGate!: () => void;
    ledger.gate = new Promise<void>((resolve) => (openGate = resolve));
    // Throws synchronously: TypeORM's loop over the hooks stops there, and awaits none of their promises.
    const throwingAtOnce: EntitySubscriberInterface = {
      beforeTransactionCommit: () => {
        throw new Error('the audit hook is misconfigured');
      },
      beforeTransactionRollback: () => openGate(),
    };
    const dataSource = app.get(DataSource);
    dataSource.subscribers.push(throwingAtOnce);
    try {
      const attempt = txHost.withTransaction(async () => {
        await txHost.tx.query(`INSERT INTO ${probe.table} (id) VALUES ($1)`, ['o-misconfigured']);
        app.get(EventBus).publish(new LedgerPostedDomainEvent('o-misconfigured/line'));
        app.get(EventBus).publish(new LedgerClosedDomainEvent('o-misconfigured'));
      });
      await expect(attempt).rejects.toThrow('the audit hook is misconfigured');
      expect(ledger.posted).toEqual(['o-misconfigured/line: written']);
      // A turn or two for a rejection nobody observes to be reported while this test runs: Jest fails the
      // running test on one (a listener of the test's own `process` would never hear it: it is a copy).
      await consistently(() => expect(ledger.posted).toEqual(['o-misconfigured/line: written']), { forMs: 200 });
    } finally {
      dataSource.subscribers.splice(dataSource.subscribers.indexOf(throwingAtOnce), 1);
      ledger.gate = Promise.resolve();
    }
    expect(await orderRows('o-misconfigured')).toBe(0);
    expect(await orderRows('o-misconfigured/line')).toBe(0);
  });

  it('fails the transaction, naming the converter, when convert() returns what is not an integration event or one object twice', async () => {
    const shared = new OrderCreatedIntegrationEvent('o-twice');
    for (const [give, says] of [
      [false, 'convert() of a HandsBackDomainEvent returned false, not an integration event'],
      [[new OrderCreatedIntegrationEvent('o-ok'), undefined], 'returned undefined, not an integration event'],
      [{ orderId: 'o-plain' }, 'returned a plain object, not an integration event'],
      [new StockReservedDomainEvent('o-domain'), 'returned a StockReservedDomainEvent (a class without @IntegrationEvent)'],
      [[shared, shared], 'returned one OrderCreatedIntegrationEvent object twice'],
    ] as const) {
      const attempt = txHost.withTransaction(async () => {
        await txHost.tx.query(`INSERT INTO ${probe.table} (id) VALUES ($1)`, ['o-hands-back']);
        app.get(EventBus).publish(new HandsBackDomainEvent(give));
      });
      await expect(attempt).rejects.toThrow(InvalidIntegrationEventConverterError);
      await expect(attempt).rejects.toThrow('@IntegrationEventConverter HandsBackConverter: convert() of a HandsBackDomainEvent ');
      await expect(attempt).rejects.toThrow(says);
      expect(await orderRows('o-hands-back')).toBe(0);
      // Not the valid part of what convert() gave either.
      const written = await outboxPayloads();
      expect(written).not.toContain('o-ok');
      expect(written).not.toContain('o-twice');
    }
  });

  it('follows savepoints: a rolled-back one takes its domain events with it, handled or not; a released one keeps them', async () => {
    const eventBus = app.get(EventBus);
    const nested = (work: () => Promise<void>) => txHost.withTransaction(Propagation.Nested, work);
    await txHost.withTransaction(async () => {
      eventBus.publish(new OrderShippedDomainEvent('sp-outer', 1));
      await nested(async () => {
        eventBus.publish(new OrderShippedDomainEvent('sp-released', 1));
        eventBus.publish(new OrderFlaggedDomainEvent('sp-released'));
      });
      // Fails before its release: its events were never handled, and never will be.
      await nested(async () => {
        eventBus.publish(new OrderShippedDomainEvent('sp-rolled-back', 1));
        eventBus.publish(new OrderFlaggedDomainEvent('sp-rolled-back'));
        throw new Error('nested step fails');
      }).catch(() => undefined);
      // Handled at the inner release, then the enclosing savepoint rolls back: gone too, sagas included.
      await nested(async () => {
        await nested(async () => {
          await txHost.tx.query(`INSERT INTO "${ns.schema}".orders (id) VALUES ('sp-placed-then-rolled-back')`);
          eventBus.publish(new OrderPlacedDomainEvent('sp-placed-then-rolled-back'));
        });
        throw new Error('enclosing step fails');
      }).catch(() => undefined);
    });

    const payloads = await outboxPayloads();
    expect(payloads).toEqual(expect.arrayContaining(['sp-outer/parcel-0', 'sp-released/parcel-0']));
    expect(payloads.filter((id: string) => id.startsWith('sp-rolled-back') || id.startsWith('sp-placed'))).toEqual([]);
    expect(probe.flaggedHandled).toEqual(['sp-released']);
    expect(probe.placedHandled.map((h) => h.orderId)).toEqual(['sp-placed-then-rolled-back']);
    await eventually(() => expect(delivered()).toEqual(expect.arrayContaining(['sp-outer/parcel-0', 'sp-released/parcel-0'])));
    await consistently(() => expect(probe.warehouseNotified).toEqual([]), { forMs: 300 });
  });

  it('keeps the events raised before a savepoint whose handlers fail, and handles them at their own commit', async () => {
    const eventBus = app.get(EventBus);
    await txHost.withTransaction(async () => {
      eventBus.publish(new OrderShippedDomainEvent('before-failing-savepoint', 1));
      await txHost
        .withTransaction(Propagation.Nested, async () => {
          probe.failWith = new Error('handler fails at the release');
          eventBus.publish(new OrderPlacedDomainEvent('in-failing-savepoint'));
        })
        .catch(() => undefined);
      probe.failWith = undefined;
    });
    expect(await outboxPayloads()).toContain('before-failing-savepoint/parcel-0');
    expect(probe.placedHandled.map((h) => h.orderId)).toEqual(['in-failing-savepoint']);
    await eventually(() => expect(delivered()).toContain('before-failing-savepoint/parcel-0'));
  });

  it('runs the handlers of an event object published anew, once its transaction committed or rolled back', async () => {
    const eventBus = app.get(EventBus);
    // A constant instance, say: handled in its transaction, then published again outside one.
    const reused = new OrderPlacedDomainEvent('o-reused');
    await txHost.withTransaction(async () => {
      await txHost.tx.query(`INSERT INTO ${probe.table} (id) VALUES ($1)`, ['o-reused']);
      eventBus.publish(reused);
    });
    expect(probe.placedHandled).toEqual([{ orderId: 'o-reused', inTransaction: true, rowVisibleInTransaction: true }]);
    // Published again right after the commit, in the same turn: its handlers run.
    eventBus.publish(reused);
    await eventually(() => expect(probe.placedHandled.map((h) => h.inTransaction)).toEqual([true, false]));

    // Handled in a transaction (at its savepoint's release) that then rolled back: that never happened.
    const rolledBack = new OrderPlacedDomainEvent('o-reused-rolled-back');
    await expect(
      txHost.withTransaction(async () => {
        await txHost.withTransaction(Propagation.Nested, async () => {
          await txHost.tx.query(`INSERT INTO ${probe.table} (id) VALUES ($1)`, ['o-reused-rolled-back']);
          eventBus.publish(rolledBack);
        });
        expect(probe.placedHandled.filter((h) => h.orderId === 'o-reused-rolled-back').map((h) => h.inTransaction)).toEqual([true]);
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    eventBus.publish(rolledBack);
    await eventually(() =>
      expect(probe.placedHandled.filter((h) => h.orderId === 'o-reused-rolled-back').map((h) => h.inTransaction)).toEqual([true, false]),
    );

    // Handled at a savepoint's release, inside a savepoint that then rolled back, the transaction committing.
    const inSavepoint = new OrderPlacedDomainEvent('o-reused-savepoint');
    await txHost.withTransaction(async () => {
      await txHost
        .withTransaction(Propagation.Nested, async () => {
          await txHost.withTransaction(Propagation.Nested, async () => eventBus.publish(inSavepoint));
          throw new Error('undo this savepoint');
        })
        .catch(() => undefined);
    });
    eventBus.publish(inSavepoint);
    await eventually(() =>
      expect(probe.placedHandled.filter((h) => h.orderId === 'o-reused-savepoint').map((h) => h.inTransaction)).toEqual([true, false]),
    );
  });

  it('forgets the handlers it ran in a transaction whose connection died at the COMMIT, whose ROLLBACK fails too', async () => {
    const eventBus = app.get(EventBus);
    const ping = new PingDomainEvent(50);
    const ran = () => probe.pingPong.filter((entry) => entry === 'ping 50').length;
    await expect(
      txHost.withTransaction(async () => {
        const [{ pid }] = (await txHost.tx.query('SELECT pg_backend_pid() AS pid')) as Array<{ pid: number }>;
        eventBus.publish(ping);
        // The handler runs before the COMMIT, which then finds the connection gone.
        await (await ns.sql()).query('SELECT pg_terminate_backend($1)', [pid]);
      }),
    ).rejects.toThrow();
    expect(ran()).toBe(1);
    eventBus.publish(ping);
    await eventually(() => expect(ran()).toBe(2));
  });

  it('runs the handlers of one event object once per transaction when two transactions overlap', async () => {
    const eventBus = app.get(EventBus);
    const shared = new OrderPlacedDomainEvent('o-shared');
    let finish!: () => void;
    const mayFinish = new Promise<void>((resolve) => (finish = resolve));
    let handledInSecond!: () => void;
    const secondHandledIt = new Promise<void>((resolve) => (handledInSecond = resolve));
    // The second transaction handles it first (at its savepoint's release) and commits last.
    const second = txHost.withTransaction(async () => {
      await txHost.withTransaction(Propagation.Nested, async () => eventBus.publish(shared));
      handledInSecond();
      await mayFinish;
    });
    try {
      await secondHandledIt;
      await txHost.withTransaction(async () => eventBus.publish(shared));
      // The first's forward down the stream is done in the turn after its commit (an ordering barrier).
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      finish();
    }
    await second;
    await consistently(
      () => expect(probe.placedHandled.filter((h) => h.orderId === 'o-shared').map((h) => h.inTransaction)).toEqual([true, true]),
      { forMs: 300 },
    );
  });

  it('refuses a converter-backed domain event outside a transaction instead of dropping its integration events', () => {
    expect(() => app.get(EventBus).publish(new OrderShippedDomainEvent('o-no-tx', 1))).toThrow(DomainEventOutsideTransactionError);
    expect(() => app.get(EventBus).publish(new ExpressShippedDomainEvent('o-no-tx-express', 1))).toThrow(DomainEventOutsideTransactionError);
  });

  it('converts a subclass of a converted domain event with its nearest class\'s converters, once', async () => {
    await txHost.withTransaction(async () => {
      app.get(EventBus).publish(new ExpressShippedDomainEvent('o-express', 1));
      app.get(EventBus).publish(new ReturnShippedDomainEvent('o-return', 1));
    });
    const payloads = await outboxPayloads();
    expect(payloads.filter((id) => id.startsWith('o-express') || id.startsWith('o-return')).sort()).toEqual(['o-express/parcel-0', 'o-return/return']);
  });
});

/** Each test here boots (or fails to boot) applications of its own, on a namespace of its own, and closes them. */
describe('@nestjs/cqrs bridge, on applications of their own', () => {
  it('refuses a domain event raised in a transaction on another DataSource than the outbox\'s, instead of never handling it', async () => {
    const other = await TestNamespace.create();
    const moduleRef = await Test.createTestingModule({
      imports: [
        // The application's DataSource, where its nestjs-cls transactions run, and the one the library is told to use.
        ...transactionsOnAnotherDataSource(other),
        CqrsModule.forRoot(),
        IntegrationEventsModule.forRoot({ ...testOptions(other), dataSourceName: 'events', consumer: { enabled: false } }),
      ],
    }).compile();
    try {
      await moduleRef.init();
      const host = moduleRef.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
      const eventBus = moduleRef.get(EventBus);
      // Queued on that transaction, the event would wait for a commit hook that DataSource does not have.
      await expect(host.withTransaction(async () => eventBus.publish(new StockReservedDomainEvent('o-elsewhere')))).rejects.toThrow(
        TransactionsNotConfiguredError,
      );
    } finally {
      try {
        await moduleRef.close();
      } finally {
        await other.cleanup();
      }
    }
  });

  it('fails boot when converters have no nestjs-cls transactions to write in, or only on another DataSource', async () => {
    const other = await TestNamespace.create();
    const boot = async (imports: ModuleMetadata['imports']) => {
      const moduleRef = await Test.createTestingModule({ imports, providers: [OrderShippedConverter] }).compile();
      moduleRef.useLogger(false);
      try {
        await moduleRef.init();
        return 'booted';
      } catch (error) {
        return (error as Error).message;
      } finally {
        await moduleRef.close();
      }
    };
    const library = IntegrationEventsModule.forRoot({ ...testOptions(other), dataSourceName: 'events', consumer: { enabled: false } });
    const events = TypeOrmModule.forRoot({ name: 'events', type: 'postgres', url: TEST_DATABASE_URL, schema: other.schema, extra: { allowExitOnIdle: true } });
    try {
      // No ClsPluginTransactional at all: every converted domain event would be refused at run time.
      expect(await boot([events, CqrsModule.forRoot(), library])).toMatch(
        /^The cqrs bridge's converters \(@IntegrationEventConverter\) needs @nestjs-cls\/transactional: register ClsModule\.forRoot/,
      );
      // Transactions only on the application's own DataSource, not the outbox's.
      expect(
        await boot([
          TypeOrmModule.forRoot({ type: 'postgres', url: TEST_DATABASE_URL, extra: { allowExitOnIdle: true } }),
          events,
          ClsModule.forRoot({
            global: true,
            plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })],
          }),
          CqrsModule.forRoot(),
          library,
        ]),
      ).toMatch(/^The cqrs bridge's converters \(@IntegrationEventConverter\) needs @nestjs-cls\/transactional on the DataSource the library uses \("events"\)/);
    } finally {
      await other.cleanup();
    }
  });

  it('holds the deliveries waiting at boot until CqrsModule has registered its command handlers', async () => {
    const other = await TestNamespace.create();
    try {
      // A first boot declares the handler's queue; a backlog then waits there for the next one.
      await (await startTestApp(other, { imports: [OrderNotesModule] })).close();
      other.trackQueue(`${other.serviceName}.NotesOrders`);
      const orderIds = ['backlog-1', 'backlog-2', 'backlog-3', 'backlog-4', 'backlog-5'];
      for (const orderId of orderIds) {
        await other.publishRaw('ordering.order-created', JSON.stringify({ orderId, placedAt: '2026-11-27T06:00:00.000Z' }));
      }
      await eventually(async () => expect(await other.queueDepth(`${other.serviceName}.NotesOrders`)).toBe(5));

      const logger = new CapturingLogger();
      /**
       * A global module imported after the library: Nest bootstraps it after the library's consumers have
       * started, and CqrsModule (not global) only after it. It holds the bootstrap until the backlog has
       * been delivered to the consumer (none left ready in the queue), so every delivery surely comes
       * before CqrsModule has registered its handlers.
       */
      @Global()
      @Module({})
      class BootstrapsOnceDelivered implements OnApplicationBootstrap {
        async onApplicationBootstrap(): Promise<void> {
          await eventually(async () => expect(await other.queueDepth(`${other.serviceName}.NotesOrders`)).toBe(0));
        }
      }
      const app = await startTestApp(other, { imports: [BootstrapsOnceDelivered, OrderNotesModule], logger });
      try {
        // The bridge counts the handlers once CqrsModule has bound them, not before.
        await eventually(() => expect(logger.text).toContain('Domain events are dispatched in their transaction: 1 handler(s)'));
        await eventually(() => expect([...app.get(NoteOrderHandler).noted].sort()).toEqual(orderIds));
        // Each handled by one call, at its first attempt: no call found the CommandBus without its handler.
        expect(app.get(NotesOrders).calls.map((call) => [call.orderId, call.attempt]).sort()).toEqual(orderIds.map((id) => [id, 1]));
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it('warns at boot of a request-scoped @EventsHandler, which runs once after the commit, outside the transaction', async () => {
    const other = await TestNamespace.create();
    try {
      const logger = new CapturingLogger();
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot()],
        providers: [RequestTenant, TenantNoteLog, TenantNotedHandler],
        options: { consumer: { enabled: false } },
        logger,
      });
      try {
        await eventually(() =>
          expect(logger.text).toContain(
            'TenantNotedHandler: request-scoped (or depending on a request-scoped provider), so not run in the transaction: once, ' +
              'after the commit, outside it. publish() there throws NoActiveTransactionError, which the caller never sees (cqrs logs it)',
          ),
        );
        const log = app.get(TenantNoteLog);
        await app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost).withTransaction(async () => {
          app.get(EventBus).publish(new TenantNotedDomainEvent('after-commit'));
          // Not before the commit: the transaction does not wait for it.
          expect(log.noted).toEqual([]);
        });
        await eventually(() => expect(log.noted).toEqual([{ note: 'after-commit', tenant: 'tenant-1', inTransaction: false }]));
        await consistently(() => expect(log.noted).toHaveLength(1), { forMs: 300 });
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it('bridges every EventBus: a feature module importing the plain CqrsModule beside CqrsModule.forRoot() has one of its own', async () => {
    const other = await TestNamespace.create();
    try {
      const logger = new CapturingLogger();
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot(), PackingModule],
        providers: [PackingProbe, ParcelPackedHandler, ParcelPackedConverter, RootPacking],
        options: { consumer: { enabled: false } },
        logger,
      });
      try {
        await eventually(() => expect(logger.text).toContain('Domain events are dispatched in their transaction: 1 handler(s) on each of 2 EventBuses, 1 converter(s)'));
        expect(logger.text).not.toContain("not cqrs's in-memory one");
        const buses = { feature: app.get(Packing).eventBus, root: app.get(RootPacking).eventBus };
        // The set-up this test is about: two CqrsModule instances, two buses.
        expect(buses.feature).not.toBe(buses.root);
        const host = app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
        const probe = app.get(PackingProbe);
        const outboxOrderIds = async () =>
          (await (await other.sql()).query(`SELECT payload FROM ${other.outboxTable}`)).rows.map((r: { payload: string }) => JSON.parse(r.payload).orderId).sort();
        for (const [name, bus] of Object.entries(buses)) {
          // A handler's throw reaches the caller and rolls back the transaction: it ran inside it, awaited.
          await expect(host.withTransaction(async () => bus.publish(new ParcelPackedDomainEvent(`${name}-fails`, true)))).rejects.toThrow(
            `packing ${name}-fails failed`,
          );
          await host.withTransaction(async () => bus.publish(new ParcelPackedDomainEvent(`${name}-ok`)));
        }
        // Each event's converter wrote its integration event in the transaction, and only for the committed ones.
        expect(await outboxOrderIds()).toEqual(['feature-ok/packed', 'root-ok/packed']);
        // Each handler ran once per event: in the transaction, and not again from the stream after the commit.
        await consistently(() => expect(probe.handled).toEqual(['feature-fails', 'feature-ok', 'root-fails', 'root-ok']));
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it('warns at boot that handlers may run twice when the EventBus publishes through the application\'s own publisher', async () => {
    const other = await TestNamespace.create();
    try {
      const logger = new CapturingLogger();
      const ownPublisher = new OwnEventPublisher();
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot({ eventPublisher: ownPublisher })],
        providers: [PackingProbe, ParcelPackedHandler, RootPacking],
        options: { consumer: { enabled: false } },
        logger,
      });
      try {
        expect(logger.text).toContain("The EventBus publishes through OwnEventPublisher, not cqrs's in-memory one");
        // Still the bridge: handled in the transaction, then handed to the application's publisher.
        await app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost).withTransaction(async () =>
          app.get(RootPacking).eventBus.publish(new ParcelPackedDomainEvent('own-1')),
        );
        expect(app.get(PackingProbe).handled).toEqual(['own-1']);
        await eventually(() => expect(ownPublisher.published).toEqual([new ParcelPackedDomainEvent('own-1')]));
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it('logs the failure of an async publisher of the application\'s after the commit, instead of an unhandled rejection', async () => {
    const other = await TestNamespace.create();
    try {
      const logger = new CapturingLogger();
      const failing = { publish: jest.fn(() => Promise.reject(new Error('the broker is away'))) };
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot({ eventPublisher: failing })],
        providers: [PackingProbe, ParcelPackedHandler, RootPacking],
        options: { consumer: { enabled: false } },
        logger,
      });
      try {
        await app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost).withTransaction(async () =>
          app.get(RootPacking).eventBus.publish(new ParcelPackedDomainEvent('async-1')),
        );
        expect(app.get(PackingProbe).handled).toEqual(['async-1']);
        await eventually(() => expect(failing.publish).toHaveBeenCalledTimes(1));
        // Handled and logged (an unhandled rejection would also fail this test: Jest blames it on the test running).
        await eventually(() =>
          expect(logger.text).toContain("The EventBus's publisher failed on a committed ParcelPackedDomainEvent: the broker is away"),
        );
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it('runs a handled event\'s handlers once when the application\'s publisher feeds the bus\'s own stream later (an IMessageSource)', async () => {
    /** Sends each event back into the bus's stream on the next tick, as a publisher over a local broker would. */
    class LoopbackPublisher implements IEventPublisher {
      subject$: { next(event: object): void } | undefined;
      bridgeEventsTo(subject: { next(event: object): void }): void {
        this.subject$ = subject;
      }
      publish(event: object): void {
        process.nextTick(() => this.subject$?.next(event));
      }
    }
    const other = await TestNamespace.create();
    try {
      const loopback = new LoopbackPublisher();
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot({ eventPublisher: loopback })],
        providers: [PackingProbe, ParcelPackedHandler, RootPacking],
        options: { consumer: { enabled: false } },
      });
      try {
        const eventBus = app.get(RootPacking).eventBus;
        loopback.bridgeEventsTo(eventBus.subject$);
        await app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost).withTransaction(async () =>
          eventBus.publish(new ParcelPackedDomainEvent('looped-1')),
        );
        // Handled in the transaction; its return through the stream, a tick later, is skipped.
        await consistently(() => expect(app.get(PackingProbe).handled).toEqual(['looped-1']), { forMs: 200 });
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it('forwards committed converter-backed events through a publisher the application wrapped around the bridge\'s', async () => {
    const other = await TestNamespace.create();
    try {
      const logger = new CapturingLogger();
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot()],
        providers: [PackingProbe, ParcelPackedHandler, ParcelPackedConverter, RootPacking, TracingPublisherDecorator],
        options: { consumer: { enabled: false } },
        logger,
      });
      const eventBus = app.get(RootPacking).eventBus;
      const streamed: object[] = [];
      const subscription = eventBus.subscribe((event) => streamed.push(event));
      try {
        await app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost).withTransaction(async () =>
          eventBus.publish(new ParcelPackedDomainEvent('traced-1')),
        );
        expect(app.get(PackingProbe).handled).toEqual(['traced-1']);
        // After the commit, through the application's wrapper (and the bridge's publisher it wraps) to the
        // stream, where sagas and other subscribers see it.
        await eventually(() => expect(streamed).toEqual([new ParcelPackedDomainEvent('traced-1')]));
        expect(app.get(TracingPublisherDecorator).traced).toEqual([new ParcelPackedDomainEvent('traced-1')]);
        expect(logger.text).not.toContain('Forwarding committed domain events failed');
      } finally {
        subscription.unsubscribe();
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it('wraps a publisher the application assigns after the library bootstrapped: domain events are still handled and converted in their transaction', async () => {
    const other = await TestNamespace.create();
    try {
      const logger = new CapturingLogger();
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot()],
        providers: [PackingProbe, ParcelPackedHandler, ParcelPackedConverter, RootPacking, PublisherSetAtBootstrap],
        options: { consumer: { enabled: false }, relay: { enabled: false } },
        logger,
      });
      try {
        expect(logger.text).toContain('The EventBus publisher was replaced after the bridge was installed (with OwnEventPublisher); wrapping the new one');
        expect(logger.text).toContain("The EventBus publishes through OwnEventPublisher, not cqrs's in-memory one");
        await app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost).withTransaction(async () =>
          app.get(RootPacking).eventBus.publish(new ParcelPackedDomainEvent('set-at-bootstrap')),
        );
        // Handled and converted in the transaction, then handed to the application's publisher.
        expect(app.get(PackingProbe).handled).toEqual(['set-at-bootstrap']);
        const { rows } = await (await other.sql()).query(`SELECT payload FROM ${other.outboxTable} WHERE event_name = 'ordering.order-created'`);
        expect(rows.map((row: { payload: string }) => JSON.parse(row.payload).orderId)).toEqual(['set-at-bootstrap/packed']);
        await eventually(() => expect(app.get(PublisherSetAtBootstrap).own.published).toEqual([new ParcelPackedDomainEvent('set-at-bootstrap')]));
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it('wraps at bootstrap a publisher the bus got without its setter (cqrs\'s useDefaultPublisher()), so converters still run', async () => {
    const other = await TestNamespace.create();
    try {
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot()],
        providers: [PackingProbe, ParcelPackedHandler, ParcelPackedConverter, RootPacking, DefaultPublisherRestored],
        options: { consumer: { enabled: false }, relay: { enabled: false } },
      });
      try {
        await app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost).withTransaction(async () =>
          app.get(RootPacking).eventBus.publish(new ParcelPackedDomainEvent('default-restored')),
        );
        expect(app.get(PackingProbe).handled).toEqual(['default-restored']);
        const { rows } = await (await other.sql()).query(`SELECT payload FROM ${other.outboxTable} WHERE event_name = 'ordering.order-created'`);
        expect(rows.map((row: { payload: string }) => JSON.parse(row.payload).orderId)).toEqual(['default-restored/packed']);
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it("knows cqrs's own in-memory publisher by its class, not its name, which a bundler may mangle", async () => {
    const other = await TestNamespace.create();
    let restore = (): void => undefined;
    try {
      const first = await startTestApp(other, { imports: [CqrsModule.forRoot()], providers: [RootPacking], options: { consumer: { enabled: false } } });
      const defaultPublisher = (first.get(RootPacking).eventBus.publisher as unknown as { inner: object }).inner.constructor;
      await first.close();
      const name = Object.getOwnPropertyDescriptor(defaultPublisher, 'name')!;
      Object.defineProperty(defaultPublisher, 'name', { ...name, value: 'e' });
      restore = () => Object.defineProperty(defaultPublisher, 'name', name);
      const logger = new CapturingLogger();
      const app = await startTestApp(other, { imports: [CqrsModule.forRoot()], providers: [RootPacking], options: { consumer: { enabled: false } }, logger });
      try {
        expect(logger.text).toContain('Domain events are dispatched in their transaction');
        expect(logger.text).not.toContain('The EventBus publishes through');
      } finally {
        await app.close();
      }
    } finally {
      restore();
      await other.cleanup();
    }
  });

  it("forwards a transaction's other committed events when the application's publisher throws on one, naming it", async () => {
    const other = await TestNamespace.create();
    try {
      const logger = new CapturingLogger();
      const published: string[] = [];
      const throwing: IEventPublisher = {
        publish: (event) => {
          const { orderId } = event as unknown as ParcelPackedDomainEvent;
          published.push(orderId);
          if (orderId === 'cannot-serialise') throw new Error('Do not know how to serialize a BigInt');
        },
      };
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot({ eventPublisher: throwing })],
        providers: [PackingProbe, ParcelPackedHandler, RootPacking],
        options: { consumer: { enabled: false } },
        logger,
      });
      try {
        const eventBus = app.get(RootPacking).eventBus;
        await app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost).withTransaction(async () => {
          eventBus.publish(new ParcelPackedDomainEvent('cannot-serialise'));
          eventBus.publish(new ParcelPackedDomainEvent('after-it'));
        });
        await eventually(() => expect(published).toEqual(['cannot-serialise', 'after-it']));
        expect(logger.text).toContain(
          'Forwarding the committed domain event ParcelPackedDomainEvent down the EventBus stream failed: Do not know how to serialize a BigInt',
        );
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });

  it('fails boot when converters are provided and the bridge is turned off, instead of never writing their integration events', async () => {
    const other = await TestNamespace.create();
    try {
      const boot = await bootMessage(other, { imports: [CqrsModule.forRoot()], providers: [ParcelPackedConverter], options: { cqrs: { enabled: false } } });
      expect(boot).toContain('converters need the cqrs bridge, and cqrs.enabled is false');
    } finally {
      await other.cleanup();
    }
  });

  it('fails boot on a converter provided in two modules, which would publish every integration event twice', async () => {
    @Module({ providers: [ParcelPackedConverter] })
    class PackingHere {}
    @Module({ providers: [ParcelPackedConverter] })
    class PackingThere {}
    const other = await TestNamespace.create();
    try {
      const boot = await bootMessage(other, { imports: [CqrsModule.forRoot(), PackingHere, PackingThere] });
      expect(boot).toContain('@IntegrationEventConverter ParcelPackedConverter: it is provided twice (in two modules)');
      // One instance under two tokens is one converter.
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot()],
        providers: [ParcelPackedConverter, { provide: 'PACKING_CONVERTER', useExisting: ParcelPackedConverter }],
      });
      await app.close();
    } finally {
      await other.cleanup();
    }
  });

  it('runs a converter provided in its decorated base\'s place (useClass), and refuses it beside its base', async () => {
    const other = await TestNamespace.create();
    try {
      const app = await startTestApp(other, {
        imports: [CqrsModule.forRoot()],
        providers: [{ provide: ParcelPackedConverter, useClass: TracedParcelPackedConverter }],
        options: { consumer: { enabled: false } },
      });
      try {
        await app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost).withTransaction(async () =>
          app.get(EventBus).publish(new ParcelPackedDomainEvent('in-place')),
        );
        expect(app.get<TracedParcelPackedConverter>(ParcelPackedConverter).converted).toEqual(['in-place']);
        const { rows } = await (await other.sql()).query(`SELECT payload FROM ${other.outboxTable}`);
        expect(rows.map((row: { payload: string }) => JSON.parse(row.payload).orderId)).toEqual(['in-place/packed']);
      } finally {
        await app.close();
      }
      const boot = await bootMessage(other, { imports: [CqrsModule.forRoot()], providers: [ParcelPackedConverter, TracedParcelPackedConverter] });
      expect(boot).toMatch(/@IntegrationEventConverter (Traced)?ParcelPackedConverter: it is provided twice \(also as (Traced)?ParcelPackedConverter\)/);
    } finally {
      await other.cleanup();
    }
  });

  it('fails boot on a converter without convert()', async () => {
    const other = await TestNamespace.create();
    try {
      await expect(
        startTestApp(other, { imports: [CqrsModule.forRoot()], providers: [ConverterWithoutConvert] }),
      ).rejects.toThrow(InvalidIntegrationEventConverterError);
    } finally {
      await other.cleanup();
    }
  });

  it('boots beside an EventBus test double provided without CqrsModule, and leaves it alone', async () => {
    const other = await TestNamespace.create();
    const double = { publish: jest.fn(), publishAll: jest.fn() };
    try {
      const app = await startTestApp(other, { providers: [OrderCreatedRecorder, { provide: EventBus, useValue: double }] });
      try {
        expect(app.get(EventBus)).toBe(double);
        const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('beside-a-double'), { standalone: true });
        await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([id]));
        app.get(EventBus).publish(new ParcelPackedDomainEvent('to-the-double'));
        expect(double.publish).toHaveBeenCalledTimes(1);
      } finally {
        await app.close();
      }
    } finally {
      await other.cleanup();
    }
  });
});
