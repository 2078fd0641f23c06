import { IntegrationEventsError } from './integration-events.error';

/**
 * Throw this from a handler to say "retrying cannot help": the message goes to the dead-letter queue at
 * once, with this error's message as the reason. Wrap the original error as `cause` to keep it.
 *
 * @example
 * ```ts
 * if (!customer) throw new NonRetryableError(`Customer ${event.customerId} does not exist`);
 * ```
 */
export class NonRetryableError extends IntegrationEventsError {}
