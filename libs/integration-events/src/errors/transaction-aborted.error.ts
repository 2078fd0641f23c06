import { IntegrationEventsError } from './integration-events.error';

/**
 * A transaction the library wrote to was about to commit although PostgreSQL had already aborted it (or,
 * on SQLite, the library was about to write to a transaction SQLite had already rolled back):
 * one of its statements failed, and the error was caught and not rethrown. PostgreSQL answers the
 * `COMMIT` of such a transaction with a `ROLLBACK` and no error, and TypeORM does not look at the answer,
 * so the caller would go on as if its writes, its outbox rows and its inbox record were committed, and
 * the relay would publish events that were never stored. The library fails the commit instead: the
 * transaction rolls back and this error reaches the caller (a handler's attempt fails and is retried).
 */
export class TransactionAbortedError extends IntegrationEventsError {
  constructor(what: string, database: 'PostgreSQL' | 'SQLite' = 'PostgreSQL') {
    super(
      database === 'PostgreSQL'
        ? `${what} was not committed: PostgreSQL had aborted the transaction after one of its statements ` +
            'failed, and that error was caught without being rethrown (a COMMIT would have rolled everything ' +
            'back silently). Rethrow the error, or run the statement that may fail in a nested transaction ' +
            '(Propagation.Nested, a savepoint) so that its failure undoes only itself.'
        : `${what} was not committed: SQLite had rolled the whole transaction back when one of its statements ` +
            'failed (a conflict clause such as INSERT OR ROLLBACK, a trigger\'s RAISE(ROLLBACK), a full disk), ' +
            'and that error was caught without being rethrown (what came after would have run, and committed, ' +
            'on its own). Rethrow the error.',
    );
  }
}
