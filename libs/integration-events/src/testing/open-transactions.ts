import type {
  DataSource,
  EntitySubscriberInterface,
  QueryRunner,
  TransactionCommitEvent,
  TransactionRollbackEvent,
  TransactionStartEvent,
} from 'typeorm';

/**
 * The transactions open on a DataSource, for `drain()`: work that started outside a delivery (a command a
 * saga sends after a handler's commit, a request in progress) writes its outbox rows only as it commits,
 * so until then neither the broker nor the outbox shows it.
 */
export class OpenTransactions implements EntitySubscriberInterface {
  private readonly runners = new Set<QueryRunner>();

  constructor(private readonly dataSource: DataSource) {
    dataSource.subscribers.push(this);
  }

  /** How many are open now. */
  get count(): number {
    // A transaction whose START, COMMIT or ROLLBACK failed (its connection lost) broadcasts no end: its
    // query runner says whether it still counts.
    for (const runner of this.runners) if (!runner.isTransactionActive || runner.isReleased) this.runners.delete(runner);
    return this.runners.size;
  }

  /** Before its connection is taken from the pool (which may wait): counted from its very start. */
  beforeTransactionStart(event: TransactionStartEvent): void {
    this.runners.add(event.queryRunner);
  }

  afterTransactionCommit(event: TransactionCommitEvent): void {
    // A savepoint's release leaves the transaction open.
    if (!event.queryRunner.isTransactionActive) this.runners.delete(event.queryRunner);
  }

  afterTransactionRollback(event: TransactionRollbackEvent): void {
    if (!event.queryRunner.isTransactionActive) this.runners.delete(event.queryRunner);
  }

  /** Stops following the DataSource. */
  detach(): void {
    const index = this.dataSource.subscribers.indexOf(this);
    if (index >= 0) this.dataSource.subscribers.splice(index, 1);
    this.runners.clear();
  }
}
