import { IntegrationEventsError } from './integration-events.error';

/** A class marked `@IntegrationEventConverter` cannot be used as one. Fails application boot. */
export class InvalidIntegrationEventConverterError extends IntegrationEventsError {
  constructor(
    /** Name of the converter class. */
    readonly converter: string,
    message: string,
  ) {
    super(`@IntegrationEventConverter ${converter}: ${message}`);
  }
}
