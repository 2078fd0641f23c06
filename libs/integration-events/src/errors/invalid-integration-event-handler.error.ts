import { IntegrationEventsError } from './integration-events.error';

/** A class marked `@IntegrationEventHandler` cannot be used as one. Fails application boot. */
export class InvalidIntegrationEventHandlerError extends IntegrationEventsError {
  constructor(
    /** Name of the handler class. */
    readonly handler: string,
    message: string,
  ) {
    super(`@IntegrationEventHandler ${handler}: ${message}`);
  }
}
