import type { EntitySubscriberInterface, QueryRunner, TransactionCommitEvent, TransactionRollbackEvent } from 'typeorm';

/** Key under which a transaction's query runner remembers that it wrote outbox rows. */
const OUTBOX_WRITTEN = Symbol('nestjs-integration-events:outbox-written');

type QueryRunnerData = Record<PropertyKey, unknown>;

/**
 * Wakes the relay when a transaction that wrote outbox rows commits.
 *
 * `@nestjs-cls/transactional` has no after-commit hook, but every TypeORM transaction, whoever opened
 * it (nestjs-cls, `dataSource.transaction()`, a hand-made query runner), ends in its query runner's
 * commit, which broadcasts `afterTransactionCommit`. `publish()` tags the query runner; this subscriber
 * sees the tag when the outermost transaction commits (a savepoint release is not a commit) and drops
 * it on rollback, so a rolled-back event never wakes anything.
 */
export class OutboxCommitSubscriber implements EntitySubscriberInterface {
  constructor(private readonly onCommitted: () => void) {}

  /** Called by `publish()` after writing rows through a transaction's query runner. */
  static markWritten(queryRunner: QueryRunner): void {
    (queryRunner.data as QueryRunnerData)[OUTBOX_WRITTEN] = true;
  }

  afterTransactionCommit(event: TransactionCommitEvent): void {
    const { queryRunner } = event;
    if (queryRunner.isTransactionActive) return;
    const data = queryRunner.data as QueryRunnerData;
    if (data[OUTBOX_WRITTEN]) {
      delete data[OUTBOX_WRITTEN];
      this.onCommitted();
    }
  }

  afterTransactionRollback(event: TransactionRollbackEvent): void {
    const { queryRunner } = event;
    if (!queryRunner.isTransactionActive) delete (queryRunner.data as QueryRunnerData)[OUTBOX_WRITTEN];
  }
}
