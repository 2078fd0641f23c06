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
    super(`Invalid IntegrationEventsModule option "${field}" (got ${describe(value)}): ${expected}.`);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === 'function') return 'a function';
  if (value === undefined) return 'undefined';
  // NaN and ±Infinity (what Number() makes of a bad environment variable) would read "null" as JSON.
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'symbol') return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
