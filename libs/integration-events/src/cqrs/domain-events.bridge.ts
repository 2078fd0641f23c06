import { Injectable, Logger, type OnApplicationBootstrap, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { EntityManager, QueryRunner } from 'typeorm';
import { EventBus } from '@nestjs/cqrs';
import { getTransactionHostToken, type TransactionHost } from '@nestjs-cls/transactional';
import { DomainEventDispatchDepthError } from '../errors/domain-event-dispatch-depth.error';
import { DomainEventOutsideTransactionError } from '../errors/domain-event-outside-transaction.error';
import { InvalidIntegrationEventConverterError } from '../errors/invalid-integration-event-converter.error';
import { TransactionsNotConfiguredError } from '../errors/transactions-not-configured.error';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { EntityManagerResolver } from '../outbox/entity-manager.resolver';
import { OutboxDatabase } from '../outbox/outbox-database';
import { IntegrationEventPublisher } from '../publisher/integration-event.publisher';
import { BridgedEventBus } from './bridged-event-bus';
import { CqrsHandlersReady } from './cqrs-handlers-ready';
import { DomainEventQueue, type QueuedDomainEvent } from './domain-event-queue';
import type { LevelDispatch } from './level-dispatch';
import { DomainEventsTransactionSubscriber } from './domain-events-transaction.subscriber';
import { IntegrationEventConverterRegistry } from './integration-event-converter.registry';

/** How often, at shutdown, the bridge looks again whether the DataSource has a transaction open. */
const RECHECK_MS = 100;

/**
 * The @nestjs/cqrs bridge. Inside a nestjs-cls transaction, domain events published on the EventBus
 * (`AggregateRoot.commit()`, `EventPublisher.mergeObjectContext`, `eventBus.publish()`) are handled by
 * their `@EventsHandler` handlers **before the commit, awaited, in the same transaction**, and their
 * `@IntegrationEventConverter`s publish integration events into the same outbox transaction. A throw
 * rolls everything back. After the commit the events go down the EventBus stream as usual (sagas and
 * other subscribers see them then), with the handlers that already ran them skipped. Outside a
 * transaction nothing changes. Every EventBus of the application is bridged (one per CqrsModule imported).
 */
@Injectable()
export class DomainEventsBridge implements OnModuleInit, OnApplicationBootstrap {
  private readonly logger = new Logger('IntegrationEvents:DomainEvents');
  private readonly subscriber = new DomainEventsTransactionSubscriber(this);
  /** Every EventBus of the application (one per CqrsModule imported), each bridged. */
  private buses: BridgedEventBus[] = [];
  /** Shutdown asked the bridge to unhook: it does once no transaction is open on the DataSource. */
  private detachAsked = false;
  private unhooked = false;
  /** The application has bootstrapped: a publisher assigned from now on is warned about at once. */
  private bootstrapped = false;
  /** While shutdown waits for the DataSource to be idle: the next look at it. */
  private recheck: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly moduleRef: ModuleRef,
    private readonly database: OutboxDatabase,
    private readonly managers: EntityManagerResolver,
    private readonly converters: IntegrationEventConverterRegistry,
    private readonly integrationEvents: IntegrationEventPublisher,
    private readonly cqrsReady: CqrsHandlersReady,
  ) {}

  /** Installs the bridge before CqrsModule registers its handlers (at application bootstrap). */
  onModuleInit(): void {
    this.converters.explore();
    if (!this.config.options.cqrs.enabled) {
      // Their domain events would pass by, and their integration events would never be written.
      if (this.converters.size > 0) {
        throw new InvalidIntegrationEventConverterError(
          'IntegrationEventConverter',
          'converters need the cqrs bridge, and cqrs.enabled is false: enable it, or remove the converters.',
        );
      }
      return;
    }
    const eventBuses = this.findEventBuses();
    if (eventBuses.length === 0) {
      if (this.converters.size > 0) {
        throw new InvalidIntegrationEventConverterError(
          'IntegrationEventConverter',
          'converters need @nestjs/cqrs: import CqrsModule.forRoot() in the application.',
        );
      }
      return;
    }
    this.buses = eventBuses.map((eventBus) => new BridgedEventBus(eventBus, this, (bus) => this.publisherReplaced(bus)));
    this.database.dataSource.subscribers.push(this.subscriber);
  }

  onApplicationBootstrap(): void {
    if (this.buses.length === 0) return;
    if (this.converters.size > 0) this.assertConvertersCanWrite();
    this.bootstrapped = true;
    for (const bus of this.buses) {
      if (bus.wrapIfBypassed()) this.logReplaced(bus);
      this.warnIfForwardedLater(bus);
    }
    // Counted once CqrsModule has bound its handlers: Nest may bootstrap it after this module.
    void this.cqrsReady.registration().then(() => {
      // Each CqrsModule binds every handler of the application to its own bus.
      const counts = this.buses.map((bus) => bus.handlerCount);
      const handlers =
        counts.length === 1
          ? `${counts[0]} handler(s)`
          : counts.every((count) => count === counts[0])
            ? `${counts[0]} handler(s) on each of ${counts.length} EventBuses`
            : `${counts.join(' + ')} handler(s) on ${counts.length} EventBuses`;
      this.logger.log(`Domain events are dispatched in their transaction: ${handlers}, ${this.converters.size} converter(s)`);
      // Such a handler is legal, but the usual one of step 3 (publish() the integration event) would fail
      // after every commit with only cqrs's log line to show it: the business rows kept, the event lost.
      const requestScoped = [...new Set(this.buses.flatMap((bus) => bus.requestScopedHandlers))];
      if (requestScoped.length > 0) {
        this.logger.warn(
          `${requestScoped.join(', ')}: request-scoped (or depending on a request-scoped provider), so not run in the transaction: ` +
            'once, after the commit, outside it. publish() there throws NoActiveTransactionError, which the caller never sees ' +
            '(cqrs logs it): keep the handler and its dependencies free of request scope to publish in the transaction.',
        );
      }
    });
  }

  /** The application assigned a bus another publisher (wrapped already); warned about at once after bootstrap. */
  private publisherReplaced(bus: BridgedEventBus): void {
    this.logReplaced(bus);
    if (this.bootstrapped) this.warnIfForwardedLater(bus);
  }

  private logReplaced(bus: BridgedEventBus): void {
    this.logger.log(`The EventBus publisher was replaced after the bridge was installed (with ${bus.inner.constructor?.name || 'a publisher of your own'}); wrapping the new one`);
  }

  private warnIfForwardedLater(bus: BridgedEventBus): void {
    if (bus.forwardsAtOnce) return;
    this.logger.warn(
      `The EventBus publishes through ${bus.inner.constructor?.name || 'a publisher of your own'}, not cqrs's in-memory one. Events handled in a ` +
        'transaction are handed to it after the commit, and their @EventsHandler handlers skip them only if it passes the same ' +
        'object to the bus stream before the next turn of the event loop: an event that comes back later or as another ' +
        'object (through a broker and an IMessageSource) runs those handlers a second time, outside the transaction.',
    );
  }

  /**
   * Lets every EventBus end its handlers' and sagas' subscriptions, held back until the consumers have
   * drained (the module calls it then); ended now if Nest already asked.
   */
  releaseSubscriptions(): void {
    for (const bus of this.buses) bus.releaseSubscriptions();
  }

  /**
   * Unhooks, at the very end of shutdown: the module calls it from its `onApplicationShutdown`, after
   * the outbox's commit hook is gone, not from a hook of its own (Nest runs the providers' hooks before
   * the module's). Until then the handlers being drained and the HTTP requests still running (until the
   * server is disposed) have their domain events handled in their transactions, converters included.
   */
  detach(): void {
    this.releaseSubscriptions();
    // Never installed (no CqrsModule, or cqrs.enabled false): nothing to unhook, and the DataSource is
    // not to be looked at (boot may have failed before it was found).
    if (this.buses.length === 0) return;
    this.detachAsked = true;
    // A transaction still open (a job or a command a later module's shutdown waits for) may have raised
    // domain events, or raise some yet: unhooked now, they would never be handled nor converted, without
    // a word. The bridge stays until the DataSource has no transaction open.
    const { open, waiting } = this.transactionsOpen();
    if (open + waiting > 0) {
      const what = open > 0 ? `${open} transaction(s) are still open on the DataSource` : `${waiting} caller(s) wait for a connection of the DataSource's pool`;
      this.logger.log(`${what}: the cqrs bridge unhooks once no transaction is open`);
    }
    this.unhookWhenIdle();
  }

  /** @internal An outermost transaction of the DataSource has ended: at shutdown, the last one lets the bridge unhook. */
  transactionEnded(): void {
    if (this.detachAsked) this.unhookWhenIdle();
  }

  private unhookWhenIdle(): void {
    if (this.unhooked) return;
    const { open, waiting } = this.transactionsOpen();
    if (open + waiting > 0) {
      // A transaction whose end TypeORM never reports (its connection lost at its start or its COMMIT)
      // stops counting once released, and a caller waiting for the pool may only ever run a query: the
      // bridge looks again now and then, not only when a transaction ends.
      this.recheck ??= setTimeout(() => {
        this.recheck = undefined;
        this.unhookWhenIdle();
      }, RECHECK_MS).unref();
      return;
    }
    clearTimeout(this.recheck);
    this.recheck = undefined;
    this.unhooked = true;
    // Not from inside TypeORM's broadcast of a transaction's end, which goes over the subscribers in a
    // loop: removed from it there, the subscriber after this one would be skipped.
    queueMicrotask(() => this.unhook());
  }

  /**
   * Transactions open on the DataSource now: those begun since the bridge was installed, still getting
   * their connection included (the pool opening a new client for one), and TypeORM's connected query
   * runners (SQLite's one) for any begun before; and on PostgreSQL the callers waiting for a connection
   * from a full pool, which may begin one once they have it.
   */
  private transactionsOpen(): { open: number; waiting: number } {
    const driver = this.database.dataSource.driver as unknown as {
      connectedQueryRunners?: QueryRunner[];
      queryRunner?: QueryRunner;
      master?: { waitingCount?: unknown };
    };
    const connected = driver.connectedQueryRunners ?? (driver.queryRunner ? [driver.queryRunner] : []);
    const open = new Set([...connected.filter((runner) => runner.isTransactionActive && !runner.isReleased), ...this.subscriber.transactionsBegun()]);
    const waiting = typeof driver.master?.waitingCount === 'number' ? driver.master.waitingCount : 0;
    return { open: open.size, waiting };
  }

  private unhook(): void {
    const subscribers = this.buses.length > 0 ? this.database.dataSource.subscribers : undefined;
    const index = subscribers?.indexOf(this.subscriber) ?? -1;
    if (index >= 0) subscribers!.splice(index, 1);
    for (const bus of this.buses) bus.detach();
  }

  /**
   * Converters write their integration events in the transaction that raised the domain event: without
   * nestjs-cls transactions on the outbox's DataSource, every such event would be refused at run time
   * (`DomainEventOutsideTransactionError`, or `TransactionsNotConfiguredError` in a transaction of
   * another DataSource). Checked at boot, once every module (nestjs-cls's included) is initialised.
   */
  private assertConvertersCanWrite(): void {
    const feature = "The cqrs bridge's converters (@IntegrationEventConverter)";
    const host = this.managers.host();
    if (!host) throw new TransactionsNotConfiguredError(feature);
    // Outside a transaction the host gives its adapter's fallback: the DataSource's own manager.
    const hostDataSource = (host.tx as Partial<EntityManager> | undefined)?.dataSource;
    if (hostDataSource !== this.database.dataSource) throw new TransactionsNotConfiguredError(feature, this.config.options.dataSourceName);
  }

  /**
   * @internal The queue of the ambient transaction, if any.
   * @throws TransactionsNotConfiguredError when that transaction runs on another DataSource than the
   *   outbox's: its commit would never run the queued events' handlers (nothing hooks that DataSource)
   */
  currentQueue(): DomainEventQueue | undefined {
    const queryRunner = this.managers.resolve(undefined)?.queryRunner;
    if (!queryRunner?.isTransactionActive) return undefined;
    if (queryRunner.connection !== this.database.dataSource) {
      throw new TransactionsNotConfiguredError('The cqrs bridge (domain events raised in a transaction)', this.config.options.dataSourceName);
    }
    return DomainEventQueue.of(queryRunner);
  }

  /** @internal */
  assertPublishableOutsideTransaction(event: object): void {
    if (this.converters.has(event)) throw new DomainEventOutsideTransactionError(event.constructor.name);
  }

  /** @internal */
  assertPublishableWhileCommitting(event: object): void {
    if (this.converters.has(event)) throw new DomainEventOutsideTransactionError(event.constructor.name, 'committing');
  }

  /**
   * @internal Handles the queue in rounds: every pending event's handlers, then its converters' integration
   * events; events raised meanwhile form the next round, until none is left or the depth limit is hit.
   * At the outermost commit the queue is sealed as the last round finds none left.
   */
  async dispatchBeforeCommit(queue: DomainEventQueue, outermost: boolean): Promise<void> {
    // The level that commits now (a savepoint's release, or the transaction): only its own events and
    // its savepoints' are handled; events raised further out wait for their own level's commit.
    const level = queue.depth;
    // A savepoint released inside a handler dispatches its own rounds within this one's: they count
    // together, or a cycle through nested transactions would start again at round 1 at each level.
    const outerRounds = queue.roundsInProgress;
    // A rollback of this level that begins meanwhile (another commit hook of the application failed)
    // stops it: nothing more starts, and the rollback waits for what runs.
    await queue.runDispatch(level, async (dispatch) => {
      try {
        await this.dispatchRounds(queue, level, outermost, outerRounds, dispatch);
      } finally {
        queue.roundsInProgress = outerRounds;
      }
    });
  }

  private async dispatchRounds(queue: DomainEventQueue, level: number, outermost: boolean, outerRounds: number, dispatch: LevelDispatch): Promise<void> {
    const { maxDispatchDepth } = this.config.options.cqrs;
    for (let round = 1; ; round++) {
      dispatch.assertRunning();
      const items = queue.takePending(level);
      if (items.length === 0) {
        // In the same synchronous step as the check: an event raised after it, by code a handler did
        // not await, is late (handled after the commit) instead of pending where no round takes it.
        if (outermost) queue.sealed = true;
        return;
      }
      queue.roundsInProgress = outerRounds + round;
      if (queue.roundsInProgress > maxDispatchDepth) {
        throw new DomainEventDispatchDepthError(
          maxDispatchDepth,
          items.map((item) => item.event.constructor.name),
        );
      }
      for (const item of items) {
        dispatch.assertRunning();
        // A handler that caught a statement SQLite answered by rolling everything back: the next
        // handler must not start in what is left (its statements would commit on their own).
        await item.route.dispatch(item.event, () => {
          dispatch.assertRunning();
          queue.assertNotRolledBackBySqlite();
        });
        dispatch.assertRunning();
        // Handled from now on: a failure below rolls it back with the rest (and its handlers are forgotten).
        item.depth = level;
        queue.dispatched.push(item);
        const integrationEvents = await this.converters.convert(item.event);
        dispatch.assertRunning();
        if (integrationEvents.length > 0) await this.integrationEvents.publish(integrationEvents);
      }
    }
  }

  /** @internal Sends the committed events down the stream, outside the finished transaction's context. */
  forwardAfterCommit(queue: DomainEventQueue): void {
    for (const { event } of queue.late) {
      this.logger.warn(
        `Domain event ${event.constructor.name} was published while its transaction was committing, after its domain events ` +
          'had been handled: its handlers run after the commit, outside the transaction. The code that raised it was not ' +
          'awaited: await it in the handler or command that starts it.',
      );
    }
    const forward = async (): Promise<void> => {
      const marked: QueuedDomainEvent[] = [];
      try {
        // In the order they were raised (a savepoint's events are handled at its release, before the
        // events raised ahead of it, which wait for the commit), as plain cqrs would send them.
        const handled = [...queue.dispatched].sort((a, b) => a.seq - b.seq);
        for (const item of handled) {
          marked.push(item);
          this.forwardOne(item, true);
        }
      } finally {
        // Not handled in the transaction: their handlers run from the stream, as with plain cqrs. After
        // the marks are gone, so that a late event that is the same object as a handled one runs them.
        const forwardLate = (): void => {
          for (const item of queue.late) this.forwardOne(item, false);
        };
        // cqrs's own publisher has called the handlers' guards by now, as the events went through: their
        // marks go at once, so that the same object published right after the commit (a constant
        // instance) runs them. Another publisher may defer to a later microtask or to the next turn: the
        // marks of its events wait for the next turn, and the late events with them.
        const deferred = marked.filter((item) => !item.route.forwardsAtOnce);
        this.forgetHandled(deferred.length === 0 ? marked : marked.filter((item) => item.route.forwardsAtOnce));
        if (deferred.length === 0) forwardLate();
        else {
          setImmediate(() => {
            this.forgetHandled(deferred);
            forwardLate();
          });
        }
      }
    };
    // The CLS context still holds the committed transaction's EntityManager: a saga reacting here must
    // not think it is inside it, so the stream is fed from a context without a transaction.
    const host = this.transactionHost();
    const run = host ? host.withoutTransaction(forward) : forward();
    run.catch((error: unknown) => this.logger.error(`Forwarding committed domain events failed: ${(error as Error).message}`));
  }

  /**
   * Sends one committed event down its bus's stream. A publisher of the application's that throws on it
   * (an event its serialisation refuses) is logged, naming the event: the commit's other events still go.
   */
  private forwardOne(item: QueuedDomainEvent, handled: boolean): void {
    try {
      item.route.forward(item.event, item.dispatcherContext, item.asyncContext, handled);
    } catch (error) {
      this.logger.error(
        `Forwarding the committed domain event ${item.event.constructor?.name || 'event'} down the EventBus stream failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  /** @internal Their handlers may run again: forwarded (see `DomainEventHandlerRegistry.forget`). */
  forgetHandled(items: readonly QueuedDomainEvent[]): void {
    for (const { event, route } of items) route.forget(event);
  }

  /**
   * cqrs's event buses. A test double provided as `EventBus` (`useValue: { publish: jest.fn() }`, with or
   * without CqrsModule) is not one: it has none of the internals the bridge hooks, and holds nothing to
   * bridge.
   */
  private findEventBuses(): EventBus[] {
    try {
      return [...new Set(this.moduleRef.get(EventBus, { strict: false, each: true }))].filter((bus) => bus instanceof EventBus);
    } catch {
      return [];
    }
  }

  private transactionHost(): TransactionHost | undefined {
    try {
      const token = getTransactionHostToken(this.config.options.transactionConnectionName);
      return this.moduleRef.get<TransactionHost>(token as symbol, { strict: false });
    } catch {
      return undefined;
    }
  }
}
