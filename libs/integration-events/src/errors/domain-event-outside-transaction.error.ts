import { IntegrationEventsError } from './integration-events.error';

/**
 * A domain event that an `@IntegrationEventConverter` turns into integration events was published
 * outside a transaction, or while its transaction was already committing (after its domain events had
 * been handled: code not awaited by the handler that started it). Converting it there would write the
 * integration event apart from the business change (a dual write), so the library refuses instead of
 * dropping it silently.
 */
export class DomainEventOutsideTransactionError extends IntegrationEventsError {
  constructor(
    /** Class name of the domain event. */
    readonly domainEvent: string,
    /** Where it was published: with no transaction, or in one whose COMMIT was under way. */
    readonly when: 'outside' | 'committing' = 'outside',
  ) {
    super(
      when === 'outside'
        ? `Domain event ${domainEvent} has an @IntegrationEventConverter but was published outside a transaction, ` +
            'so its integration events could not be written atomically with the change that raised it. Raise ' +
            'it inside @Transactional() (or TransactionHost.withTransaction()).'
        : `Domain event ${domainEvent} has an @IntegrationEventConverter but was published while its transaction was ` +
            'committing, after that transaction\'s domain events had been handled, so its integration events could ' +
            'not be written in it. The code that raised it was not awaited: await it in the handler or command that starts it.',
    );
  }
}
