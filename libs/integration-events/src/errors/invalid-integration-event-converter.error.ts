import { IntegrationEventsError } from './integration-events.error';

/**
 * A class marked `@IntegrationEventConverter` cannot be used as one (fails application boot), or its
 * `convert()` returned something that is not an integration event (fails the transaction that raised
 * the domain event, which rolls back).
 */
export class InvalidIntegrationEventConverterError extends IntegrationEventsError {
  constructor(
    /** Name of the converter class. */
    readonly converter: string,
    message: string,
  ) {
    super(`@IntegrationEventConverter ${converter}: ${message}`);
  }
}
