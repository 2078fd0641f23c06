import type { EntitySubscriberInterface, QueryRunner, TransactionCommitEvent, TransactionRollbackEvent, TransactionStartEvent } from 'typeorm';
import { AbandonedAttempt } from '../inbox/abandoned-attempt';
import { Logger } from '@nestjs/common';
import { assertTransactionNotAborted, committedAsRollback, reopenIfRolledBackBySqlite } from '../outbox/aborted-transaction';
import { OutboxCommitSubscriber } from '../outbox/outbox-commit.subscriber';
import { DomainEventQueue } from './domain-event-queue';

/** What the subscriber asks of the bridge at each end of a transaction. */
export interface DomainEventTransactionHooks {
  /**
   * Handles the queued domain events, in the transaction; a throw rolls it back. At the outermost
   * commit, seals the queue as it finds none left (see `DomainEventQueue.sealed`).
   */
  dispatchBeforeCommit(queue: DomainEventQueue, outermost: boolean): Promise<void>;
  /** Sends the handled domain events down the EventBus stream, the transaction having committed. */
  forwardAfterCommit(queue: DomainEventQueue): void;
  /** An outermost transaction has ended (committed or rolled back). */
  transactionEnded(): void;
}

/**
 * Hooks the domain events of a nestjs-cls transaction onto TypeORM's commit. TypeORM awaits
 * `beforeTransactionCommit` subscribers inside the transaction, before `COMMIT`, and rolls back when
 * one throws: that is where the handlers run. A savepoint release fires it too, so events raised in a
 * nested transaction are handled when it completes; a savepoint rollback drops the events raised or
 * handled in it; the stream only sees events once the outermost transaction has committed.
 */
export class DomainEventsTransactionSubscriber implements EntitySubscriberInterface {
  private readonly logger = new Logger('IntegrationEvents:Cqrs');

  /**
   * The query runners whose outermost transaction has begun and not yet ended, counted from before it
   * gets its connection: one waiting for the pool to open a new client is neither among TypeORM's
   * connected query runners nor among the pool's waiting callers, and may raise domain events once it
   * has its connection. A runner whose end TypeORM never reported (its ROLLBACK failed) is released, and
   * counts no longer (it is pruned when the set is read).
   */
  private readonly begun = new Set<QueryRunner>();

  constructor(private readonly hooks: DomainEventTransactionHooks) {}

  beforeTransactionStart(event: TransactionStartEvent): void {
    this.begun.add(event.queryRunner);
    // Ends are reported for nearly all: this only bounds what unreported ends would leave.
    if (this.begun.size > 256) this.transactionsBegun();
  }

  /** The transactions begun through TypeORM and still open, those still getting their connection included. */
  transactionsBegun(): QueryRunner[] {
    for (const queryRunner of this.begun) {
      if (!queryRunner.isTransactionActive || queryRunner.isReleased) this.begun.delete(queryRunner);
    }
    return [...this.begun];
  }

  beforeTransactionCommit(event: TransactionCommitEvent): Promise<void> {
    const done = this.handleBeforeCommit(event);
    // Observed here too: TypeORM collects the hooks' promises in a loop that a hook throwing at once
    // (called after this one) cuts short, and then awaits none of them; a rejection of this one (its
    // dispatch stopped by the rollback that follows) must not become an unhandled one.
    done.catch(() => undefined);
    return done;
  }

  /**
   * Notes which dispatch opened each savepoint (`DomainEventQueue.noteSavepointOpener`), so that its
   * rollback is told apart from a rollback of the level a dispatch commits.
   */
  afterTransactionStart(event: TransactionStartEvent): void {
    const depth = OutboxCommitSubscriber.depthOf(event.queryRunner);
    if (depth !== undefined && depth > 1) DomainEventQueue.noteSavepointOpener(event.queryRunner, depth);
  }

  private async handleBeforeCommit(event: TransactionCommitEvent): Promise<void> {
    const { queryRunner } = event;
    const outermost = OutboxCommitSubscriber.depthOf(queryRunner) === 1;
    const queue = DomainEventQueue.find(queryRunner);
    // A transaction SQLite rolled back (opened again, at this level or below): its handlers must not run
    // in it; refused before any starts, as the other commit hooks may refuse it side by side with this.
    queue?.assertNotRolledBackBySqlite();
    if (!queue) {
      // An event raised from now on, by code the transaction's work did not await, is too late to be
      // handled in it: it must not wait in a queue nobody dispatches (see `DomainEventQueue.sealed`).
      if (outermost) DomainEventQueue.markCommitting(queryRunner);
      return;
    }
    if (queue.pending.length > 0) {
      await this.hooks.dispatchBeforeCommit(queue, outermost);
      // An inbox attempt given up (its timeout) while those handlers ran must not commit: the
      // inbox's own last check ran before them.
      AbandonedAttempt.assertNot(queryRunner);
    }
    // A handler that caught a failed statement leaves the transaction aborted: its COMMIT would roll
    // back silently, the stream would see events that never happened, and the relay would get the
    // outbox rows. Checked here, after the handlers, for the outbox too (see isCheckedAfterDomainEvents).
    if (outermost) {
      // Sealed by the rounds as they found none left, or now, with none raised yet: from then on an event
      // raised is too late to be handled in the transaction.
      queue.sealed = true;
      await assertTransactionNotAborted(queryRunner, 'The transaction that raised domain events');
      // The last check before this inbox attempt's COMMIT (the inbox left it to this subscriber).
      AbandonedAttempt.assertNotAndBeginCommit(queryRunner);
    }
  }

  afterTransactionCommit(event: TransactionCommitEvent): void {
    const { queryRunner } = event;
    if (queryRunner.isTransactionActive) {
      // A savepoint was released: its events now belong to the enclosing level.
      const queue = DomainEventQueue.find(queryRunner);
      queue?.released(queue.depth);
      return;
    }
    this.begun.delete(queryRunner);
    const queue = DomainEventQueue.take(queryRunner);
    this.hooks.transactionEnded();
    if (!queue || (queue.dispatched.length === 0 && queue.late.length === 0)) return;
    if (committedAsRollback(queryRunner)) {
      // A statement failed after the last check and its error was caught (an application's commit hook,
      // running beside this one): the COMMIT rolled back, and its events never happened.
      this.logger.warn(
        'A transaction that raised domain events was rolled back by PostgreSQL at its COMMIT (a statement failed after ' +
          "the library's last check, and its error was caught, by a beforeTransactionCommit hook say): its events do not " +
          'go down the EventBus stream.',
      );
      return;
    }
    this.hooks.forwardAfterCommit(queue);
  }

  /**
   * The whole transaction rolls back: its events never happened, and nothing is forwarded. Dropped here,
   * before the ROLLBACK statement, as that statement fails on a connection that died (at the COMMIT, say),
   * and TypeORM then never says the transaction ended. Savepoints are followed after their rollback, below.
   *
   * TypeORM runs the before-commit subscribers side by side and rolls back as soon as one throws: the
   * domain-event handlers of the level rolling back may still be running. They are stopped (none starts
   * after the one under way) and waited for, so that what the running one still does goes into the
   * transaction and is rolled back with it, instead of running on its own after the ROLLBACK. TypeORM
   * reads the depth it rolls back after this wait, once that handler's own savepoints are closed.
   */
  beforeTransactionRollback(event: TransactionRollbackEvent): void | Promise<void> {
    const { queryRunner } = event;
    const queue = DomainEventQueue.find(queryRunner);
    const dispatches = queue?.stopDispatches(queue.depth, DomainEventQueue.savepointOpener(queryRunner, queue.depth));
    if (!dispatches) {
      this.dropIfWhole(queryRunner);
      return;
    }
    return dispatches.then(() => {
      // SQLite may have rolled the transaction back under the handler waited for (a statement with a
      // conflict clause, caught): opened again, so that TypeORM's ROLLBACK goes through and its one query
      // runner does not go on counting a transaction. The outbox's own check ran before the wait.
      reopenIfRolledBackBySqlite(queryRunner);
      this.dropIfWhole(queryRunner);
    });
  }

  private dropIfWhole(queryRunner: QueryRunner): void {
    if (OutboxCommitSubscriber.depthOf(queryRunner) === 1) this.drop(queryRunner);
  }

  private drop(queryRunner: QueryRunner): void {
    DomainEventQueue.take(queryRunner);
  }

  afterTransactionRollback(event: TransactionRollbackEvent): void {
    const { queryRunner } = event;
    if (!queryRunner.isTransactionActive) {
      this.begun.delete(queryRunner);
      this.drop(queryRunner);
      this.hooks.transactionEnded();
      return;
    }
    // A savepoint rolled back: the events raised or handled in it never happened.
    const queue = DomainEventQueue.find(queryRunner);
    queue?.rolledBack(queue.depth);
  }
}
