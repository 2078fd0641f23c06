import { IntegrationEventsError } from './integration-events.error';

/**
 * `publish()` was called with no transaction to join. Writing the outbox row on its own would
 * silently turn the caller's business write and the event into a dual write, so the library refuses.
 */
export class NoActiveTransactionError extends IntegrationEventsError {
  constructor(
    detail = 'it was called outside a transaction',
    fix = 'Fix one of: run the caller inside @Transactional() (nestjs-cls) or TransactionHost.withTransaction(); pass ' +
      "the transaction's EntityManager as { manager }; or, if there is no business write to protect, pass " +
      '{ standalone: true } to write the outbox row in its own transaction.',
  ) {
    super(`IntegrationEventPublisher.publish() refused: ${detail}, so the event cannot be committed atomically with your business data. ${fix}`);
  }
}
