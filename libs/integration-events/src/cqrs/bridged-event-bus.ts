import { Logger } from '@nestjs/common';
import { EventBus, type IEvent, type IEventPublisher } from '@nestjs/cqrs';
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

  /** The bus's own `publisher` accessor (cqrs's, on its prototype), which the bridge's goes through. */
  private readonly ownAccessor: PropertyDescriptor | undefined;

  /**
   * @param onReplaced told when the application assigns the bus another publisher once the bridge is
   *   installed (the new one is wrapped then)
   */
  constructor(
    readonly eventBus: EventBus,
    private readonly context: TransactionalEventPublisherContext,
    private readonly onReplaced: (bus: BridgedEventBus) => void = () => undefined,
  ) {
    this.registry.install(eventBus);
    this.publisher = new TransactionalEventPublisher(eventBus.publisher, context, this);
    eventBus.publisher = this.publisher;
    this.ownAccessor = accessorOf(eventBus, 'publisher');
    this.interceptAssignments();
    this.holdSubscriptions();
  }

  /**
   * A publisher the application assigns later (`eventBus.publisher = tracing(eventBus.publisher)` in an
   * `onModuleInit` or `onApplicationBootstrap` of its own, which Nest may run after this library's) is
   * wrapped as it is assigned: left as it is, every domain event would skip its transaction, its
   * handlers would not be awaited there and its converters would never run, without a word.
   */
  private interceptAssignments(): void {
    const own = this.ownAccessor;
    if (!own?.get || !own.set) return;
    Object.defineProperty(this.eventBus, 'publisher', {
      configurable: true,
      get: () => own.get!.call(this.eventBus),
      set: this.assign,
    });
  }

  /** The bridge's setter of the bus's `publisher` (see `interceptAssignments()`). */
  private readonly assign = (publisher: IEventPublisher): void => {
    if (publisher === this.publisher) return this.ownAccessor!.set!.call(this.eventBus, publisher);
    this.wrap(publisher);
    this.onReplaced(this);
  };

  /** Installs a wrapper of `publisher` through the bus's own setter, retiring the bridge's current one. */
  private wrap(publisher: IEventPublisher): void {
    // The new publisher may wrap the one installed before (a decorator's `new Tracing(bus.publisher)`):
    // committed events forwarded through it, outside any transaction, must pass that one untouched.
    this.publisher.retire();
    this.publisher = new TransactionalEventPublisher(publisher, this.context, this);
    const own = this.ownAccessor;
    if (own?.set) own.set.call(this.eventBus, this.publisher);
    else this.eventBus.publisher = this.publisher;
  }

  /**
   * Wraps a publisher the bus got without its `publisher` setter (cqrs's `useDefaultPublisher()` writes
   * its field directly): checked at bootstrap, a second net under `interceptAssignments()`.
   * @returns whether one was found
   */
  wrapIfBypassed(): boolean {
    const current = this.eventBus.publisher;
    if (current === this.publisher) return false;
    this.wrap(current);
    return true;
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
    const inner = this.publisher.inner as object;
    return this.publishesToItsOwnStream && (DEFAULT_PUBLISHER ? inner.constructor === DEFAULT_PUBLISHER : inner.constructor?.name === 'DefaultPubSub');
  }

  /** The publisher the bridge forwards to (the bus's own, or the application's). */
  get inner(): TransactionalEventPublisher['inner'] {
    return this.publisher.inner;
  }

  /** Gives the bus its publisher back, and its own `publisher` accessor (at shutdown). */
  detach(): void {
    // Only the bridge's own accessor: another one installed over it since is not this bridge's to remove.
    if (Object.getOwnPropertyDescriptor(this.eventBus, 'publisher')?.set === this.assign) delete (this.eventBus as unknown as { publisher?: unknown }).publisher;
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

/** The accessor `key` has on `target`'s prototype chain. */
function accessorOf(target: object, key: string): PropertyDescriptor | undefined {
  for (let proto = Object.getPrototypeOf(target) as object | null; proto; proto = Object.getPrototypeOf(proto) as object | null) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, key);
    if (descriptor) return descriptor.get || descriptor.set ? descriptor : undefined;
  }
  return undefined;
}

/**
 * cqrs's in-memory publisher class, which @nestjs/cqrs does not export: the one `useDefaultPublisher()`
 * makes, caught on a probe. Known by its class, not its name, which a bundler may mangle; by its name if
 * the probe fails.
 */
const DEFAULT_PUBLISHER: Function | undefined = (() => {
  try {
    let made: unknown;
    const probe = new Proxy({} as Record<PropertyKey, unknown>, {
      set: (_target, _key, value) => {
        made = value;
        return true;
      },
    });
    (EventBus.prototype as unknown as { useDefaultPublisher(this: object): void }).useDefaultPublisher.call(probe);
    return typeof made === 'object' && made !== null ? (made as object).constructor : undefined;
  } catch {
    return undefined;
  }
})();

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
