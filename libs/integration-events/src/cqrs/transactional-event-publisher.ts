import type { IEvent, IEventPublisher } from '@nestjs/cqrs';
import type { DomainEventQueue, DomainEventRoute } from './domain-event-queue';

/** What the publisher needs to know about the current transaction and the converters. */
export interface TransactionalEventPublisherContext {
  /** The current transaction's domain event queue, or `undefined` outside a transaction. */
  currentQueue(): DomainEventQueue | undefined;
  /** Throws when `event` must not be published outside a transaction (it has converters). */
  assertPublishableOutsideTransaction(event: object): void;
  /** Throws when `event` must not be published in a transaction that is committing (it has converters). */
  assertPublishableWhileCommitting(event: object): void;
}

/**
 * Installed as the EventBus's publisher, wrapping the one that was there (the default in-memory one,
 * or yours). Outside a transaction it passes every event straight through: cqrs behaves as it always
 * did. Inside a transaction it holds the event in the transaction's queue, to be handled before the
 * commit and sent down the stream after it; raised once that commit is under way (too late to be handled
 * in it), it is sent down the stream after the commit, unhandled, or refused when it has converters.
 */
export class TransactionalEventPublisher<EventBase extends IEvent = IEvent> implements IEventPublisher<EventBase> {
  /**
   * @param route the bus this publisher is installed on: an event queued here is handled, and later
   *   forwarded, by that bus
   */
  constructor(
    readonly inner: IEventPublisher<EventBase>,
    private readonly context: TransactionalEventPublisherContext,
    private readonly route: DomainEventRoute,
  ) {}

  /** Replaced by a publisher wrapping this one: it passes every event straight through from now on. */
  private retired = false;

  /** See `retired`. */
  retire(): void {
    this.retired = true;
  }

  publish<T extends EventBase>(event: T, dispatcherContext?: unknown, asyncContext?: unknown): unknown {
    if (this.retired) return (this.inner.publish as (e: T, d?: unknown, a?: unknown) => unknown)(event, dispatcherContext, asyncContext);
    const queue = this.context.currentQueue();
    if (queue) {
      if (queue.sealed) this.context.assertPublishableWhileCommitting(event);
      queue.add(event, dispatcherContext, asyncContext, this.route);
      return undefined;
    }
    this.context.assertPublishableOutsideTransaction(event);
    return (this.inner.publish as (e: T, d?: unknown, a?: unknown) => unknown)(event, dispatcherContext, asyncContext);
  }

  publishAll<T extends EventBase>(events: T[], dispatcherContext?: unknown, asyncContext?: unknown): unknown {
    const queue = this.retired ? undefined : this.context.currentQueue();
    if (queue) {
      if (queue.sealed) for (const event of events) this.context.assertPublishableWhileCommitting(event);
      for (const event of events) queue.add(event, dispatcherContext, asyncContext, this.route);
      return undefined;
    }
    if (!this.retired) for (const event of events) this.context.assertPublishableOutsideTransaction(event);
    const inner = this.inner as IEventPublisher<EventBase> & {
      publishAll?: (e: T[], d?: unknown, a?: unknown) => unknown;
    };
    if (inner.publishAll) return inner.publishAll(events, dispatcherContext, asyncContext);
    return events.map((event) => (inner.publish as (e: T, d?: unknown, a?: unknown) => unknown)(event, dispatcherContext, asyncContext));
  }
}
