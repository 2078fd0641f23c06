import { IntegrationEventsError } from './integration-events.error';

/**
 * `publish()` was given an event that would not survive a JSON round trip unchanged.
 * Nothing was written to the outbox.
 */
export class IntegrationEventSerializationError extends IntegrationEventsError {
  constructor(
    /** Name of the event, as on the wire. */
    readonly eventName: string,
    /** Where in the event the offending value sits, e.g. `$.lines[2].price`. */
    readonly path: string,
    /** What the value is and why it cannot be sent. */
    readonly reason: string,
  ) {
    super(
      `Integration event "${eventName}" cannot be published: ${path} ${reason}. ` +
        'Integration events must be plain JSON data (strings, finite numbers, booleans, null, arrays, ' +
        'objects of those, and Date); convert the value before publishing. Nothing was written to the outbox.',
    );
  }
}
