import { describeOptionValue } from '../util/describe-option-value';
import { IntegrationEventsError } from './integration-events.error';

/**
 * A module option is missing or out of range. Thrown by `IntegrationEventsModule.forRoot()` and,
 * for `forRootAsync()`, by `app.init()`, so a misconfigured service fails at boot, never later.
 */
export class InvalidIntegrationEventsOptionsError extends IntegrationEventsError {
  constructor(
    /** Dotted path of the option, e.g. `relay.batchSize`. */
    readonly field: string,
    /** The value that was given. Never a credential: URLs are redacted before they get here. */
    readonly value: unknown,
    /** What is expected, phrased as the fix. */
    readonly expected: string,
  ) {
    super(`Invalid IntegrationEventsModule option "${field}" (got ${describeOptionValue(value)}): ${expected}.`);
  }
}
