import { IntegrationEventsError } from './integration-events.error';

/**
 * A class is used as an integration event but is not a valid one: it lacks `@IntegrationEvent`,
 * or the decorator was given a name or version that cannot be a stable wire contract.
 */
export class IntegrationEventDefinitionError extends IntegrationEventsError {
  constructor(
    /** Name of the offending class (or `typeof` of what was passed instead of a class). */
    readonly eventClass: string,
    message: string,
  ) {
    super(message);
  }
}
