import { IntegrationEventsError } from './integration-events.error';

/**
 * The transaction whose domain events were being handled at its commit began to roll back while they
 * ran (another `beforeTransactionCommit` subscriber of the application failed, say: TypeORM rolls back
 * as soon as one of them throws). The handler under way was let finish in the transaction, which is
 * then rolled back with what it did; no further domain-event handler or converter starts. The caller of
 * the transaction gets the error that started the rollback; this one reaches only code that awaited the
 * dispatch it stopped (the release of a savepoint, opened by the handler under way, that raised domain
 * events).
 */
export class TransactionRollingBackError extends IntegrationEventsError {
  constructor() {
    super(
      'The transaction began to roll back while its domain events were being handled at its commit: no further ' +
        'domain-event handler or converter starts in it, and what the handlers did is rolled back with it.',
    );
  }
}
