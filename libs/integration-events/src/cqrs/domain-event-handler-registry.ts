import type { EventBus, EventOperator, IEvent, IEventHandler } from '@nestjs/cqrs';
import { of } from 'rxjs';

type HandlerWrapper = Parameters<EventBus['bind']>[0];

interface StaticHandlerEntry {
  readonly name: string;
  /** The EventBus's own operator for this handler: its event filter, then the handler call. */
  readonly operator: EventOperator;
}

/**
 * Lets the library call the application's `@EventsHandler` handlers itself, awaited, using only the
 * EventBus's public API (cqrs 12 exports neither its handler metadata keys nor deep imports):
 *
 * - `EventBus.bind(handler, id)` is wrapped, before CqrsModule registers handlers at bootstrap, so each
 *   singleton handler is bound with a guard around its instance, and the operator the bus builds for it
 *   (`filter by event id → call handle()`) is remembered.
 * - In-transaction dispatch runs one event through each remembered operator (`of(event).pipe(op)`): the
 *   bus's own filter decides which handlers apply (custom `eventIdProvider`s included), and the guard
 *   hands the handler's promise to the dispatcher instead of letting the bus swallow it.
 * - After the commit the event goes down the bus's normal stream for sagas and other subscribers; the
 *   guard skips handlers that already ran it (marked as it is forwarded), so no handler runs twice.
 *
 * Request-scoped handlers are bound untouched: they are not dispatched in the transaction and run once,
 * from the stream, after the commit.
 */
export class DomainEventHandlerRegistry {
  private readonly entries: StaticHandlerEntry[] = [];
  /** Names of the request-scoped handlers, bound untouched: they run only after the commit. */
  private readonly afterCommit = new Set<string>();
  /**
   * Event objects handled in their transaction and going down the stream now, counted: the same object (a
   * constant instance) may be forwarded by two transactions at once.
   */
  private readonly handledInTransaction = new WeakMap<object, number>();
  /** Set only while `dispatch()` pushes an event through one operator, synchronously. */
  private collecting: { readonly event: IEvent; readonly promises: Array<Promise<unknown>> } | undefined;

  install(eventBus: EventBus): void {
    const bind = eventBus.bind.bind(eventBus);
    eventBus.bind = (handler: HandlerWrapper, id: string): void => {
      if (!handler.isDependencyTreeStatic()) {
        this.afterCommit.add(String((handler.metatype as { name?: string } | null)?.name ?? handler.name));
        bind(handler, id);
        return;
      }
      const index = eventBus.eventOperators.length;
      bind(this.guard(handler), id);
      const operator = eventBus.eventOperators[index];
      if (!operator) throw new Error('EventBus.bind() did not register an operator; @nestjs/cqrs changed its internals');
      this.entries.push({ name: String((handler.metatype as { name?: string } | null)?.name ?? handler.name), operator });
    };
  }

  /** Number of singleton handlers bound so far. */
  get size(): number {
    return this.entries.length;
  }

  /** The request-scoped handlers bound so far, by class name: not run in the transaction. */
  get requestScoped(): readonly string[] {
    return [...this.afterCommit];
  }

  /**
   * Runs every handler of `event`, one after the other, awaiting each; the first failure is thrown.
   * @param afterEach called once each handler has finished, before the next starts; what it throws is
   *   thrown
   * @returns how many handlers ran
   */
  async dispatch(event: IEvent, afterEach: () => void = () => undefined): Promise<number> {
    let ran = 0;
    for (const entry of this.entries) {
      const promises: Array<Promise<unknown>> = [];
      // Only this event's calls: another event a handler publishes in its synchronous part, outside the
      // transaction (a NotSupported method, say), goes down the stream as plain cqrs has it.
      this.collecting = { event, promises };
      try {
        of(event).pipe(entry.operator).subscribe();
      } finally {
        this.collecting = undefined;
      }
      for (const promise of promises) {
        ran++;
        await promise;
        afterEach();
      }
    }
    return ran;
  }

  /**
   * The event, handled in its transaction, now goes down the stream: its handlers skip it there until
   * `forget()`. Marked only for that moment, so the same object published meanwhile elsewhere (a constant
   * instance, outside a transaction) still runs them.
   */
  markHandled(event: object): void {
    this.handledInTransaction.set(event, (this.handledInTransaction.get(event) ?? 0) + 1);
  }

  /**
   * The event's handlers may run again: its forward down the stream is done (an event object published
   * again later, such as a constant instance, is a new occurrence).
   */
  forget(event: object): void {
    const count = this.handledInTransaction.get(event) ?? 0;
    if (count > 1) this.handledInTransaction.set(event, count - 1);
    else this.handledInTransaction.delete(event);
  }

  private guard(handler: HandlerWrapper): HandlerWrapper {
    const guarded = {
      handle: (event: IEvent): unknown => {
        const instance = handler.instance as IEventHandler;
        const collecting = this.collecting;
        if (collecting && collecting.event === event) {
          let result: Promise<unknown>;
          try {
            result = Promise.resolve(instance.handle(event));
          } catch (error) {
            result = Promise.reject(error);
          }
          collecting.promises.push(result);
          // The bus only sees a settled promise: the error belongs to the transaction, not to the
          // bus's "unhandled exception" logging.
          return result.catch(() => undefined);
        }
        if (this.handledInTransaction.has(event)) return undefined;
        return instance.handle(event);
      },
    };
    return new Proxy(handler, {
      get: (target, property) =>
        property === 'instance' ? guarded : Reflect.get(target, property, target),
    });
  }
}
