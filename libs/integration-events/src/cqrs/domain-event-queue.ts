import type { QueryRunner } from 'typeorm';
import { DOMAIN_EVENT_QUEUE_KEY, reopenIfRolledBackBySqlite, wasRolledBackBySqlite } from '../outbox/aborted-transaction';
import { TransactionAbortedError } from '../errors/transaction-aborted.error';
import { OutboxCommitSubscriber } from '../outbox/outbox-commit.subscriber';
import { currentDispatch, LevelDispatch } from './level-dispatch';

/** The `EventBus` a domain event was published on: its handlers run the event, its stream gets it. */
export interface DomainEventRoute {
  /**
   * Runs the event's handlers bound to this bus, awaited, one after the other (calling `afterEach` after
   * each, which may throw to stop them); returns how many ran.
   */
  dispatch(event: object, afterEach?: () => void): Promise<number>;
  /**
   * Sends the (committed) event down this bus's stream, through the publisher the bridge wrapped; with
   * `handled`, its handlers that ran it in the transaction skip it there until `forget()`.
   */
  forward(event: object, dispatcherContext: unknown, asyncContext: unknown, handled: boolean): void;
  /** The forwarded event's handlers on this bus may run it again (see `DomainEventHandlerRegistry.forget`). */
  forget(event: object): void;
  /** Whether `forward()` reaches the handlers at once (cqrs's in-memory publisher), not later. */
  readonly forwardsAtOnce: boolean;
}

/** A domain event published inside a transaction, with what `EventBus.publish()` was given along with it. */
export interface QueuedDomainEvent {
  readonly event: object;
  readonly dispatcherContext: unknown;
  readonly asyncContext: unknown;
  /** The bus it was published on. */
  readonly route: DomainEventRoute;
  /** Its place among the transaction's events as they were raised: the stream gets them in that order. */
  readonly seq: number;
  /**
   * The savepoint depth it belongs to (1 = the transaction itself): raised there, or handled in a
   * savepoint of that depth. A rollback of that savepoint undoes it; a release moves it to the parent.
   */
  depth: number;
}

/**
 * The domain events of one transaction: `pending` wait for in-transaction dispatch (before the commit),
 * `dispatched` have been handled and wait for the commit, after which they go to the EventBus stream
 * (sagas, other subscribers). Kept on the transaction's query runner, so it lives and dies with it, and
 * follows its savepoints as the outbox rows do (`OutboxCommitSubscriber`): a savepoint's release handles
 * the events raised in it, its rollback drops them, handled or not.
 */
export class DomainEventQueue {
  readonly pending: QueuedDomainEvent[] = [];
  readonly dispatched: QueuedDomainEvent[] = [];
  /**
   * Raised once the transaction was committing (its domain events handled, its COMMIT under way): too
   * late for its handlers to run in it. They go down the stream after the commit, unhandled there.
   */
  readonly late: QueuedDomainEvent[] = [];
  /** Set when the outermost commit has handled its events: what is raised from then on is late. */
  sealed = false;
  /** Rounds of dispatch in progress, a savepoint's release inside a handler of the level outside it included. */
  roundsInProgress = 0;
  private raised = 0;
  /** The dispatches under way in this transaction (see `LevelDispatch`). */
  private readonly dispatches = new Set<LevelDispatch>();
  /**
   * The levels of the rollbacks waiting for dispatches now, one entry per rollback: a dispatch of such a
   * level or deeper that begins meanwhile (a savepoint released by the handler being waited for) starts
   * stopped.
   */
  private readonly rollingBack: number[] = [];

  private static readonly KEY = DOMAIN_EVENT_QUEUE_KEY;
  /** On a query runner: by savepoint depth, the dispatch that opened it (see `noteSavepointOpener`). */
  private static readonly SAVEPOINT_OPENERS = Symbol('nestjs-integration-events:savepoint-openers');
  /** Set on a query runner whose outermost commit began with no queue: a queue made from then on is sealed. */
  private static readonly COMMITTING = Symbol('nestjs-integration-events:domain-events-committing');

  private constructor(private readonly queryRunner: QueryRunner) {}

  /** The queue of the transaction running on `queryRunner`, created on first use. */
  static of(queryRunner: QueryRunner): DomainEventQueue {
    const data = queryRunner.data as Record<PropertyKey, unknown>;
    let queue = data[DomainEventQueue.KEY] as DomainEventQueue | undefined;
    if (!queue) {
      queue = new DomainEventQueue(queryRunner);
      queue.sealed = data[DomainEventQueue.COMMITTING] === true;
      data[DomainEventQueue.KEY] = queue;
    }
    return queue;
  }

  /** The outermost commit of `queryRunner`'s transaction has begun, with no domain event so far. */
  static markCommitting(queryRunner: QueryRunner): void {
    (queryRunner.data as Record<PropertyKey, unknown>)[DomainEventQueue.COMMITTING] = true;
  }

  /**
   * Notes the dispatch the code that opened the savepoint at `depth` runs in (none: code outside any).
   * Kept on the query runner, queue or not: a savepoint may open before any domain event is raised.
   */
  static noteSavepointOpener(queryRunner: QueryRunner, depth: number): void {
    const data = queryRunner.data as Record<PropertyKey, unknown>;
    let openers = data[DomainEventQueue.SAVEPOINT_OPENERS] as Array<LevelDispatch | undefined> | undefined;
    if (!openers) data[DomainEventQueue.SAVEPOINT_OPENERS] = openers = [];
    openers[depth] = currentDispatch.getStore();
    // Deeper ones belong to savepoints that have ended.
    openers.length = depth + 1;
  }

  /** The dispatch the code that opened the savepoint at `depth` ran in (see `noteSavepointOpener`). */
  static savepointOpener(queryRunner: QueryRunner, depth: number): LevelDispatch | undefined {
    if (depth <= 1) return undefined;
    return ((queryRunner.data as Record<PropertyKey, unknown>)[DomainEventQueue.SAVEPOINT_OPENERS] as Array<LevelDispatch | undefined> | undefined)?.[depth];
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
    delete data[DomainEventQueue.COMMITTING];
    delete data[DomainEventQueue.SAVEPOINT_OPENERS];
    return queue;
  }

  /**
   * Throws `TransactionAbortedError` when SQLite has rolled the transaction back (a statement with a
   * conflict clause, caught): its domain-event handlers must not run in it, their statements committing
   * on their own. Checked before the handlers start and after each.
   */
  assertNotRolledBackBySqlite(): void {
    if (reopenIfRolledBackBySqlite(this.queryRunner) || wasRolledBackBySqlite(this.queryRunner)) {
      throw new TransactionAbortedError('The transaction that raised domain events', 'SQLite');
    }
  }

  /** The transaction's savepoint depth now (1 when TypeORM does not tell: savepoints are then not followed). */
  get depth(): number {
    return OutboxCommitSubscriber.depthOf(this.queryRunner) ?? 1;
  }

  /**
   * Runs `dispatch` as the dispatch of `level`'s events (see `LevelDispatch`); what rolls the level
   * back meanwhile stops it and waits for it (`stopDispatches`).
   */
  async runDispatch(level: number, dispatch: (current: LevelDispatch) => Promise<void>): Promise<void> {
    const current = new LevelDispatch(level, currentDispatch.getStore());
    if (this.rollingBack.some((rolledBack) => level >= rolledBack)) current.stop();
    this.dispatches.add(current);
    try {
      await currentDispatch.run(current, () => dispatch(current));
    } finally {
      this.dispatches.delete(current);
      current.end();
    }
  }

  /**
   * TypeORM is about to roll back the transaction's level `depth` (its savepoint, or the whole of it at
   * 1): stops the dispatches that rollback takes, and returns a promise that settles once those under
   * way have ended, so that their handlers' statements run in the transaction before its rollback, not
   * after it on their own. Not the dispatches the calling code runs in: they wait for it. `undefined`
   * when there are none.
   *
   * A savepoint that code running in a dispatch opened (`opener`), rolled back from outside that
   * dispatch, is the rollback of the level the dispatch commits (that commit failed beside it): `depth`
   * counts the savepoints its handler has open meanwhile, which are closed by the time TypeORM, once the
   * wait is over, reads the depth it rolls back. A savepoint opened outside any dispatch (another commit
   * hook's) is rolled back alone.
   */
  stopDispatches(depth: number, opener?: LevelDispatch): Promise<void> | undefined {
    if (this.dispatches.size === 0) return undefined;
    const caller = currentDispatch.getStore();
    let level = depth;
    if (opener) {
      for (const dispatch of this.dispatches) {
        if (dispatch.level < level && opener.runsWithin(dispatch) && !caller?.runsWithin(dispatch)) level = dispatch.level;
      }
    }
    const waited: Array<Promise<void>> = [];
    for (const dispatch of this.dispatches) {
      if (dispatch.level < level) continue;
      dispatch.stop();
      if (!caller?.runsWithin(dispatch)) waited.push(dispatch.ended);
    }
    if (waited.length === 0) return undefined;
    this.rollingBack.push(level);
    return Promise.all(waited).then(() => {
      this.rollingBack.splice(this.rollingBack.indexOf(level), 1);
    });
  }

  /** Queues an event raised now, at the current depth (late, once the queue is sealed). */
  add(event: object, dispatcherContext: unknown, asyncContext: unknown, route: DomainEventRoute): void {
    (this.sealed ? this.late : this.pending).push({ event, dispatcherContext, asyncContext, route, depth: this.depth, seq: this.raised++ });
  }

  /** Takes out the pending events raised at `depth` or deeper: those whose savepoint (or transaction) commits now. */
  takePending(depth: number): QueuedDomainEvent[] {
    const taken: QueuedDomainEvent[] = [];
    for (let i = 0; i < this.pending.length; ) {
      if (this.pending[i]!.depth >= depth) taken.push(...this.pending.splice(i, 1));
      else i++;
    }
    return taken;
  }

  /** A savepoint was released, back to `depth`: what belonged to it now belongs to the enclosing level. */
  released(depth: number): void {
    for (const item of [...this.pending, ...this.dispatched, ...this.late]) if (item.depth > depth) item.depth = depth;
  }

  /** A savepoint rolled back, to `depth`: what was raised or handled in it never happened. */
  rolledBack(depth: number): void {
    for (const list of [this.pending, this.dispatched, this.late]) {
      for (let i = list.length - 1; i >= 0; i--) if (list[i]!.depth > depth) list.splice(i, 1);
    }
  }
}
