import { Injectable } from '@nestjs/common';
import { OutboxDatabase } from './outbox-database';

/**
 * Runs your own transactions one at a time with the library's, where they would otherwise nest: on
 * SQLite, TypeORM runs every transaction of a `better-sqlite3` DataSource on its one connection, so two
 * open at once become one (the second a savepoint of the first: a "commit" of the second is undone by a
 * rollback of the first). `run(work)` starts `work` once the library's inbox transactions before it, and
 * the other `run()` calls, have ended and no transaction is open; the library's next ones wait for it.
 * On PostgreSQL (one connection per transaction) it runs `work` at once.
 *
 * Wrap each entry point that opens a transaction (an HTTP request's command, a scheduled job) outside
 * the transaction, not inside it, and never one `run()` inside another: it would wait for itself.
 *
 * @example
 * ```ts
 * @Post() create(@Body() body: CreateOrderDto) {
 *   return this.turns.run(() => this.commandBus.execute(new CreateOrderCommand(body))); // @Transactional() inside
 * }
 * ```
 */
@Injectable()
export class TransactionTurns {
  constructor(private readonly database: OutboxDatabase) {}

  /**
   * The wait has no time limit of its own (an inbox attempt abandoned at its timeout keeps the turn until
   * its handler returns): pass `signal` (`AbortSignal.timeout(5_000)`, a request's) to give the turn up
   * while it is still waited for. The result then rejects with the signal's reason and `work` never
   * starts; once `work` has started, the signal is `work`'s to honour. Reads take the turn too when
   * they must not see an open inbox transaction's uncommitted rows (on SQLite a read runs inside
   * whatever transaction is open).
   */
  async run<T>(work: () => Promise<T>, options: { signal?: AbortSignal } = {}): Promise<T> {
    const sqlite = this.database.sqlite;
    if (sqlite) return sqlite.exclusive(work, options.signal);
    // At once on PostgreSQL, unless given up already: the same contract on both stores.
    options.signal?.throwIfAborted();
    return work();
  }
}
