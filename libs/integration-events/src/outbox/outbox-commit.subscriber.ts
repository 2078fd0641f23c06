import { Logger } from '@nestjs/common';
import type {
  BeforeQueryEvent,
  EntitySubscriberInterface,
  QueryRunner,
  TransactionCommitEvent,
  TransactionRollbackEvent,
  TransactionStartEvent,
} from 'typeorm';
import {
  assertTransactionNotAborted,
  forgetRollbackBySqlite,
  isCheckedAfterDomainEvents,
  noteCommitOutcome,
  reopenIfRolledBackBySqlite,
  wasRolledBackAtCommit,
  wasRolledBackBySqlite,
  watchCommitOutcome,
} from './aborted-transaction';
import { NoActiveTransactionError } from '../errors/no-active-transaction.error';
import { TransactionAbortedError } from '../errors/transaction-aborted.error';
import type { LaneReservation } from '../relay/relay-handoff';
import type { ClaimedOutboxRecord } from './outbox-record';

/** Key under which a transaction's query runner keeps what it wrote to the outbox. */
const OUTBOX_WRITES = Symbol('nestjs-integration-events:outbox-writes');

type QueryRunnerData = Record<PropertyKey, unknown>;

/**
 * Set on a query runner whose transaction ran an outbox INSERT that failed: PostgreSQL has likely aborted
 * it, and a caller that caught the error would otherwise commit it silently as a rollback.
 */
const FAILED_WRITE = Symbol('nestjs-integration-events:failed-outbox-write');

/** On a query runner while TypeORM itself rolls back (a savepoint or the transaction): how many such rollbacks are under way. */
const OWN_ROLLBACK = Symbol('nestjs-integration-events:own-rollback');

/**
 * Set on a query runner as the COMMIT or ROLLBACK that ends its transaction is sent (by TypeORM or by the
 * application): a statement sent after it on that connection would run on its own, after the transaction.
 */
const ENDING = Symbol('nestjs-integration-events:ending');

/** The statements that end a transaction, as TypeORM sends them (`ROLLBACK TO SAVEPOINT` does not). */
const ENDING_SQL = /^\s*(?:COMMIT|END|ROLLBACK|ABORT)(?:\s+(?:WORK|TRANSACTION))?\s*;?\s*$/i;

/** Set on a query runner whose transaction ran a rollback TypeORM did not send (see `beforeQuery`). */
const SQL_ROLLBACK = Symbol('nestjs-integration-events:sql-rollback');

/**
 * A rollback sent as SQL (`ROLLBACK TO SAVEPOINT s`, `ROLLBACK`, `ABORT`), possibly after comments or
 * other statements of a multi-statement string. A false match (the word in a literal) only costs the
 * transaction's rows their handoff: they go out through a claim.
 */
const ROLLBACK_SQL = /(?:^|;)(?:\s|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*(?:ROLLBACK|ABORT)\b/i;

/** Rows written under the relay's lease at one savepoint depth (1 = the transaction itself). */
interface LeasedWrite {
  depth: number;
  readonly leasedAt: number;
  readonly records: readonly ClaimedOutboxRecord[];
  /** The room these rows hold in the relay's lane until the transaction ends. */
  readonly reservation: LaneReservation;
}

/** What one transaction wrote to the outbox so far. */
interface OutboxWrites {
  /** Rows written without a lease: the relay has to claim them. */
  claimNeeded: boolean;
  readonly leased: LeasedWrite[];
}

/** What a committed transaction wrote: unleased rows to claim, and leased rows to hand to the relay. */
export interface CommittedOutboxWrites {
  readonly claimNeeded: boolean;
  readonly leased: ReadonlyArray<{
    /** Set when an application's own ROLLBACK came after the rows: they are to be released and claimed, not published as they are. */
    readonly unsure?: boolean;
    readonly leasedAt: number;
    readonly records: readonly ClaimedOutboxRecord[];
    readonly reservation: LaneReservation;
  }>;
}

/**
 * Tells the relay about outbox rows when, and only when, the transaction that wrote them commits.
 *
 * `@nestjs-cls/transactional` has no after-commit hook, but every TypeORM transaction, whoever opened
 * it (nestjs-cls, `dataSource.transaction()`, a hand-made query runner), ends in its query runner's
 * commit, which broadcasts `afterTransactionCommit`. `publish()` notes its rows on the query runner,
 * with the savepoint depth they were written at; this subscriber follows the savepoints (a rolled-back
 * savepoint drops the rows written in it, a released one folds them into its parent) and reports what
 * is left when the outermost transaction commits. A rollback reports only the lane room its leased rows
 * held (`onDiscarded`), and so does the commit of a transaction PostgreSQL had aborted, which fails
 * (`TransactionAbortedError`). A rollback the application sends as SQL (`ROLLBACK TO SAVEPOINT s` on
 * a savepoint of its own), which TypeORM does not count, cannot be followed: the transaction's leased
 * rows are then reported as unsure, to be released and claimed (only those still there go out).
 */
export class OutboxCommitSubscriber implements EntitySubscriberInterface {
  private readonly logger = new Logger('IntegrationEvents:Outbox');

  constructor(
    private readonly onCommitted: (writes: CommittedOutboxWrites) => void,
    private readonly onDiscarded: (reservations: LaneReservation[]) => void = () => undefined,
  ) {}

  /**
   * Refuses a write to a transaction whose COMMIT or ROLLBACK has been sent: code the transaction's work
   * did not await (a branch of a `Promise.all` whose other branch failed) would otherwise have its row
   * written on its own, after the transaction, published though the transaction rolled back.
   * @throws NoActiveTransactionError
   */
  static assertNotEnding(queryRunner: QueryRunner): void {
    if ((queryRunner.data as QueryRunnerData)[ENDING] !== true) return;
    throw new NoActiveTransactionError(
      'its transaction was ending (its COMMIT or ROLLBACK had been sent), and the outbox row would have been written after it, on its own',
      'The call was not awaited by the work the transaction runs: await it there. With Promise.all, a branch that fails ' +
        'ends the transaction while the others still run: use Promise.allSettled, then throw.',
    );
  }

  /**
   * The query runner's savepoint depth (1 = in a transaction, no savepoint), or `undefined` when this
   * TypeORM does not expose it; rows are then never leased, as the savepoints cannot be followed.
   */
  static depthOf(queryRunner: QueryRunner): number | undefined {
    const depth = (queryRunner as unknown as { transactionDepth?: unknown }).transactionDepth;
    return typeof depth === 'number' && depth >= 1 ? depth : undefined;
  }

  /**
   * Whether the rest of `queryRunner`'s transaction writes its rows for a claim: it has written rows
   * without the relay's lease, or run a rollback of its own as SQL (its leased rows go through a claim
   * too, see `beforeQuery`, and later ones must not overtake them).
   */
  static wroteUnleasedRows(queryRunner: QueryRunner): boolean {
    const data = queryRunner.data as QueryRunnerData;
    return data[SQL_ROLLBACK] === true || (data[OUTBOX_WRITES] as OutboxWrites | undefined)?.claimNeeded === true;
  }

  /** Called by `publish()` after writing rows through a transaction's query runner. */
  static noteWrite(
    queryRunner: QueryRunner,
    leased?: { depth: number; leasedAt: number; records: readonly ClaimedOutboxRecord[]; reservation: LaneReservation },
  ): void {
    const data = queryRunner.data as QueryRunnerData;
    let writes = data[OUTBOX_WRITES] as OutboxWrites | undefined;
    if (!writes) {
      writes = { claimNeeded: false, leased: [] };
      data[OUTBOX_WRITES] = writes;
    }
    if (leased) writes.leased.push({ ...leased });
    else writes.claimNeeded = true;
  }

  /**
   * Called by `publish()` when its INSERT through a transaction's query runner failed: the commit is then
   * checked as for one that wrote rows (a caller that caught the error gets `TransactionAbortedError`
   * from the commit instead of a silent rollback of its own writes; one whose transaction is still
   * sound, the failure undone by a savepoint or never sent, commits).
   */
  static noteFailedWrite(queryRunner: QueryRunner): void {
    (queryRunner.data as QueryRunnerData)[FAILED_WRITE] = true;
  }

  beforeTransactionStart(event: TransactionStartEvent): void {
    // A savepoint about to open in a transaction SQLite rolled back: its SAVEPOINT would begin a new
    // transaction of its own (a release then commits it, rows and all). Opened again first, and noted.
    if ((OutboxCommitSubscriber.depthOf(event.queryRunner) ?? 0) >= 1) reopenIfRolledBackBySqlite(event.queryRunner);
  }

  afterTransactionStart(event: TransactionStartEvent): void {
    // A new outermost transaction: nothing from an earlier one (a failed COMMIT) may leak into it.
    if (OutboxCommitSubscriber.depthOf(event.queryRunner) === 1) {
      this.forget(event.queryRunner);
      forgetRollbackBySqlite(event.queryRunner);
      const data = event.queryRunner.data as QueryRunnerData;
      // SQLite's one query runner serves every transaction: a flag an earlier one left (a ROLLBACK
      // that failed, so no after-rollback event) must not hide this one's own rollbacks.
      delete data[SQL_ROLLBACK];
      delete data[OWN_ROLLBACK];
      delete data[FAILED_WRITE];
      delete data[ENDING];
      // Whatever the transaction comes to hold by its COMMIT (rows or domain events written by commit
      // hooks included), what PostgreSQL answers that COMMIT is known (see afterTransactionCommit).
      watchCommitOutcome(event.queryRunner);
    }
  }

  async beforeTransactionCommit(event: TransactionCommitEvent): Promise<void> {
    // Its COMMIT would be a silent ROLLBACK, and this subscriber would then hand rows that were never
    // stored to the relay. (A savepoint's RELEASE fails on its own in an aborted transaction.)
    const { queryRunner } = event;
    const depth = OutboxCommitSubscriber.depthOf(queryRunner);
    if ((depth ?? 1) > 1) {
      // A savepoint of a transaction SQLite rolled back: its RELEASE would fail with "no such savepoint";
      // opened again, the savepoint fails as a whole with the reason, and its rollback goes through. So
      // does one of a transaction opened again before (its work goes with the transaction anyway).
      if (reopenIfRolledBackBySqlite(queryRunner) || wasRolledBackBySqlite(queryRunner)) {
        throw new TransactionAbortedError('The nested transaction (savepoint)', 'SQLite');
      }
      return;
    }
    if (depth !== 1) return;
    // The cqrs bridge checks the transaction after its domain-event handlers, which run side by side with this.
    if (isCheckedAfterDomainEvents(queryRunner)) return;
    const data = queryRunner.data as QueryRunnerData;
    if (!data[OUTBOX_WRITES] && !data[FAILED_WRITE]) {
      // Nothing of the library's in it, but SQLite rolled it back at a savepoint and it was opened again:
      // committing now would keep what came after and silently lose what came before.
      if (wasRolledBackBySqlite(queryRunner)) throw new TransactionAbortedError('The transaction', 'SQLite');
      return;
    }
    try {
      await assertTransactionNotAborted(
        queryRunner,
        data[OUTBOX_WRITES] ? 'The transaction that published integration events' : 'The transaction whose publish() failed',
      );
    } catch (error) {
      // It can never commit: its rows are gone, whether or not its caller rolls back.
      this.forget(queryRunner);
      throw error;
    }
  }

  beforeTransactionRollback(event: TransactionRollbackEvent): void {
    // SQLite rolled it back itself: TypeORM's ROLLBACK would fail and leave it counting a transaction.
    reopenIfRolledBackBySqlite(event.queryRunner);
    // Counted: a handler the cqrs bridge waits for (see its before-rollback hook) may roll back a
    // savepoint of its own meanwhile, whose end must not clear this rollback's mark.
    const data = event.queryRunner.data as QueryRunnerData;
    data[OWN_ROLLBACK] = ((data[OWN_ROLLBACK] as number | undefined) ?? 0) + 1;
  }

  /**
   * A ROLLBACK the application sends itself (`queryRunner.query('ROLLBACK TO SAVEPOINT s')`) may undo
   * rows written since its savepoint, which TypeORM knows nothing of (nor which rows, nor whether an
   * insert under way beside it is among them). Noted for the transaction: at its commit its leased rows
   * are released instead of handed over, and its later rows are written for a claim, which sends those
   * in the table in their order. TypeORM's own rollbacks, which this subscriber follows, are told apart
   * by the flag its before-rollback event sets.
   */
  beforeQuery(event: BeforeQueryEvent): void {
    const { queryRunner, query } = event;
    if (!queryRunner?.isTransactionActive) return;
    const data = queryRunner.data as QueryRunnerData;
    if (ENDING_SQL.test(query)) data[ENDING] = true;
    if (data[SQL_ROLLBACK] === true || data[OWN_ROLLBACK] !== undefined || !ROLLBACK_SQL.test(query)) return;
    data[SQL_ROLLBACK] = true;
  }

  afterTransactionCommit(event: TransactionCommitEvent): void {
    const { queryRunner } = event;
    const data = queryRunner.data as QueryRunnerData;
    if (!queryRunner.isTransactionActive) {
      // Ended: a query runner that serves another transaction next (SQLite's one) must not refuse its writes.
      delete data[ENDING];
      // Noted for the inbox too, which learns of the commit once the connection went back to the pool.
      noteCommitOutcome(queryRunner);
    }
    const writes = data[OUTBOX_WRITES] as OutboxWrites | undefined;
    if (!writes) return;
    if (queryRunner.isTransactionActive) {
      // A savepoint was released: its rows now belong to the enclosing level.
      const depth = OutboxCommitSubscriber.depthOf(queryRunner) ?? 1;
      for (const write of writes.leased) if (write.depth > depth) write.depth = depth;
      return;
    }
    if (wasRolledBackAtCommit(queryRunner)) {
      // A statement failed after the last check (an application's commit hook caught its error): the
      // COMMIT rolled back, no row was stored, and none may be published.
      this.logger.warn(
        'A transaction that published integration events was rolled back by PostgreSQL at its COMMIT (a statement ' +
          "failed after the library's last check, and its error was caught, by a beforeTransactionCommit hook say): " +
          'its events are not published.',
      );
      this.forget(queryRunner);
      return;
    }
    delete data[OUTBOX_WRITES];
    if (data[SQL_ROLLBACK] === true) {
      // Rows an application's own ROLLBACK may have undone: released by the relay and claimed if there.
      this.onCommitted({ claimNeeded: true, leased: writes.leased.map((write) => ({ ...write, unsure: true })) });
      return;
    }
    this.onCommitted(writes);
  }

  afterTransactionRollback(event: TransactionRollbackEvent): void {
    const { queryRunner } = event;
    const data = queryRunner.data as QueryRunnerData;
    if (!queryRunner.isTransactionActive) delete data[ENDING];
    const ownRollbacks = ((data[OWN_ROLLBACK] as number | undefined) ?? 1) - 1;
    if (ownRollbacks > 0) data[OWN_ROLLBACK] = ownRollbacks;
    else delete data[OWN_ROLLBACK];
    const writes = data[OUTBOX_WRITES] as OutboxWrites | undefined;
    if (!writes) return;
    if (!queryRunner.isTransactionActive) {
      this.forget(queryRunner);
      return;
    }
    // A savepoint rolled back: the rows written in it (or in savepoints inside it) are gone.
    const depth = OutboxCommitSubscriber.depthOf(queryRunner) ?? 0;
    const gone: LaneReservation[] = [];
    for (let i = writes.leased.length - 1; i >= 0; i--) {
      if (writes.leased[i]!.depth > depth) gone.push(...writes.leased.splice(i, 1).map((write) => write.reservation));
    }
    if (gone.length > 0) this.onDiscarded(gone);
  }

  /** Drops what a transaction that did not commit wrote, giving back the lane room of its leased rows. */
  private forget(queryRunner: QueryRunner): void {
    const data = queryRunner.data as QueryRunnerData;
    const writes = data[OUTBOX_WRITES] as OutboxWrites | undefined;
    delete data[OUTBOX_WRITES];
    if (writes && writes.leased.length > 0) this.onDiscarded(writes.leased.map((write) => write.reservation));
  }
}
