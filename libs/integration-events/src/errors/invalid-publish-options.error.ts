import { IntegrationEventsError } from './integration-events.error';

/** A `publish()` option is not acceptable (a reserved or malformed header, a bad correlation id, ...). */
export class InvalidPublishOptionsError extends IntegrationEventsError {
  constructor(
    /** Name of the option, e.g. `headers.ie-event-name`. */
    readonly option: string,
    message: string,
  ) {
    super(`Invalid publish() option "${option}": ${message}`);
  }
}
