import { IntegrationEventsError } from './integration-events.error';

/**
 * A domain event that an `@IntegrationEventConverter` turns into integration events was published
 * outside a transaction. Converting it there would write the integration event apart from the
 * business change (a dual write), so the library refuses instead of dropping it silently.
 */
export class DomainEventOutsideTransactionError extends IntegrationEventsError {
  constructor(
    /** Class name of the domain event. */
    readonly domainEvent: string,
  ) {
    super(
      `Domain event ${domainEvent} has an @IntegrationEventConverter but was published outside a transaction, ` +
        'so its integration events could not be written atomically with the change that raised it. Raise ' +
        'it inside @Transactional() (or TransactionHost.withTransaction()).',
    );
  }
}
