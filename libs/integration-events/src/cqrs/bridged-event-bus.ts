import { Logger } from '@nestjs/common';
import type { EventBus, IEvent } from '@nestjs/cqrs';
import { DomainEventHandlerRegistry } from './domain-event-handler-registry';
import type { DomainEventRoute } from './domain-event-queue';
import { TransactionalEventPublisher, type TransactionalEventPublisherContext } from './transactional-event-publisher';

/**
 * One `EventBus` with the bridge installed: its handlers taken over for in-transaction dispatch, its
 * publisher wrapped. An application has one bus per `CqrsModule` it imports (`CqrsModule.forRoot()` in
 * the root and a plain `CqrsModule` in a feature module make two), and each bus dispatches to its own
 * handler bindings and stream: an event queued in a transaction is handled, and later forwarded, by the
 * bus it was published on.
 */
export class BridgedEventBus implements DomainEventRoute {
  private static readonly logger = new Logger('IntegrationEvents:DomainEvents');

  private readonly registry = new DomainEventHandlerRegistry();
  private publisher: TransactionalEventPublisher;
  /** The bus's own `onModuleDestroy` while it is held back (see `holdSubscriptions()`). */
  private ownDestroy: (() => unknown) | undefined;
  /** Nest asked the bus to end its subscriptions while they were held. */
  private destroyAsked = false;

  constructor(
    readonly eventBus: EventBus,
    private readonly context: TransactionalEventPublisherContext,
  ) {
    this.registry.install(eventBus);
    this.publisher = new TransactionalEventPublisher(eventBus.publisher, context, this);
    eventBus.publisher = this.publisher;
    this.holdSubscriptions();
  }

  /**
   * The bus's `onModuleDestroy` ends every handler's and saga's subscription to its stream. Nest may
   * call it before the consumers have drained (CqrsModule is shut down first when it was imported after
   * this library's module, or in a feature module): the domain events of the handlers still running
   * would then reach no saga and no request-scoped handler after their commit. Held back until
   * `releaseSubscriptions()`, called once the consumers have stopped.
   */
  private holdSubscriptions(): void {
    const bus = this.eventBus as unknown as { onModuleDestroy?: () => unknown };
    const own = bus.onModuleDestroy;
    if (typeof own !== 'function') return;
    this.ownDestroy = own;
    bus.onModuleDestroy = () => {
      this.destroyAsked = true;
    };
  }

  /** Ends the bus's subscriptions now if Nest asked for it meanwhile; a later call of Nest's goes straight to the bus. */
  releaseSubscriptions(): void {
    const ownDestroy = this.ownDestroy;
    if (!ownDestroy) return;
    this.ownDestroy = undefined;
    const bus = this.eventBus as unknown as { onModuleDestroy: () => unknown };
    bus.onModuleDestroy = ownDestroy;
    if (this.destroyAsked) bus.onModuleDestroy();
  }

  /** The request-scoped handlers of this bus, by class name: they run only after the commit. */
  get requestScopedHandlers(): readonly string[] {
    return this.registry.requestScoped;
  }

  /** Number of singleton handlers bound to this bus so far. */
  get handlerCount(): number {
    return this.registry.size;
  }

  /**
   * Whether the bus publishes straight into its own stream, as cqrs's in-memory publisher does (which
   * @nestjs/cqrs does not export): a forwarded event then reaches the handlers' guards at once.
   */
  get publishesToItsOwnStream(): boolean {
    return (this.publisher.inner as { subject$?: unknown }).subject$ === this.eventBus.subject$;
  }

  /**
   * Whether a forwarded event reaches the handlers' guards before `forward()` returns: cqrs's own
   * in-memory publisher, known by its class (a publisher of the application's that keeps the bus's
   * subject may still hand the event on later).
   */
  get forwardsAtOnce(): boolean {
    return this.publishesToItsOwnStream && (this.publisher.inner as object).constructor?.name === 'DefaultPubSub';
  }

  /** The publisher the bridge forwards to (the bus's own, or the application's). */
  get inner(): TransactionalEventPublisher['inner'] {
    return this.publisher.inner;
  }

  /**
   * Wraps the bus's publisher again when it was replaced after the bridge was installed (e.g. in an
   * application's `onModuleInit`).
   * @returns whether it was replaced
   */
  wrapReplacedPublisher(): boolean {
    if (this.eventBus.publisher === this.publisher) return false;
    // The new publisher may wrap the one installed before (a decorator's `new Tracing(bus.publisher)`):
    // committed events forwarded through it, outside any transaction, must pass that one untouched.
    this.publisher.retire();
    this.publisher = new TransactionalEventPublisher(this.eventBus.publisher, this.context, this);
    this.eventBus.publisher = this.publisher;
    return true;
  }

  /** Gives the bus its publisher back (at shutdown). */
  detach(): void {
    if (this.eventBus.publisher === this.publisher) this.eventBus.publisher = this.publisher.inner;
  }

  dispatch(event: IEvent, afterEach?: () => void): Promise<number> {
    return this.registry.dispatch(event, afterEach);
  }

  forward(event: object, dispatcherContext: unknown, asyncContext: unknown, handled: boolean): void {
    if (handled) this.registry.markHandled(event);
    const sent = (this.publisher.inner.publish as (e: object, d?: unknown, a?: unknown) => unknown)(event, dispatcherContext, asyncContext);
    // An application's own publisher may be async (it sends to a broker): the caller of publish() has
    // had its answer at the commit, so a failure now is logged, never an unhandled rejection (which
    // ends the process).
    if (isThenable(sent)) {
      // Through Promise.resolve: a thenable whose then() throws becomes a logged rejection too, not an
      // exception that stops the commit's other events from being forwarded.
      Promise.resolve(sent).catch((error: unknown) =>
        BridgedEventBus.logger.error(
          `The EventBus's publisher failed on a committed ${event.constructor?.name || 'event'}: ${error instanceof Error ? error.message : String(error)}`,
        ),
      );
    }
  }

  forget(event: object): void {
    this.registry.forget(event);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
