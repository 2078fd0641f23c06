import { IntegrationEventsError } from './integration-events.error';

/**
 * Throw this from a handler to say "retrying cannot help": the message goes to the dead-letter queue at
 * once, with this error's message as the reason. Wrap the original error as `cause` to keep it: the
 * dead letter's `ie-error-message` and `ie-error-stack` name the causes too.
 *
 * @example
 * ```ts
 * if (!customer) throw new NonRetryableError(`Customer ${event.customerId} does not exist`);
 * // …
 * } catch (error) {
 *   throw new NonRetryableError('The card was refused', { cause: error });
 * }
 * ```
 */
export class NonRetryableError extends IntegrationEventsError {}
