import type { QueryRunner } from 'typeorm';

/** A domain event published inside a transaction, with what `EventBus.publish()` was given along with it. */
export interface QueuedDomainEvent {
  readonly event: object;
  readonly dispatcherContext: unknown;
  readonly asyncContext: unknown;
}

/**
 * The domain events of one transaction: `pending` wait for in-transaction dispatch (before the commit),
 * `dispatched` have been handled and wait for the commit, after which they go to the EventBus stream
 * (sagas, other subscribers). Kept on the transaction's query runner, so it lives and dies with it.
 */
export class DomainEventQueue {
  readonly pending: QueuedDomainEvent[] = [];
  readonly dispatched: QueuedDomainEvent[] = [];

  private static readonly KEY = Symbol('nestjs-integration-events:domain-events');

  /** The queue of the transaction running on `queryRunner`, created on first use. */
  static of(queryRunner: QueryRunner): DomainEventQueue {
    const data = queryRunner.data as Record<PropertyKey, unknown>;
    let queue = data[DomainEventQueue.KEY] as DomainEventQueue | undefined;
    if (!queue) {
      queue = new DomainEventQueue();
      data[DomainEventQueue.KEY] = queue;
    }
    return queue;
  }

  /** The queue of `queryRunner`'s transaction, if it has one. */
  static find(queryRunner: QueryRunner): DomainEventQueue | undefined {
    return (queryRunner.data as Record<PropertyKey, unknown>)[DomainEventQueue.KEY] as DomainEventQueue | undefined;
  }

  /** Detaches and returns the queue (at the end of the transaction). */
  static take(queryRunner: QueryRunner): DomainEventQueue | undefined {
    const data = queryRunner.data as Record<PropertyKey, unknown>;
    const queue = data[DomainEventQueue.KEY] as DomainEventQueue | undefined;
    delete data[DomainEventQueue.KEY];
    return queue;
  }
}
