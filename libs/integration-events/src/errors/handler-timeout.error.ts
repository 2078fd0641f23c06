import { IntegrationEventsError } from './integration-events.error';

/**
 * A handler did not settle within its timeout. The attempt counts as failed (and is retried); the
 * handler's `context.signal` is aborted with this error so it can stop what it is doing.
 */
export class HandlerTimeoutError extends IntegrationEventsError {
  constructor(
    readonly handler: string,
    readonly timeoutMs: number,
  ) {
    super(
      `Handler ${handler} did not finish within ${timeoutMs} ms. Raise its timeout with ` +
        '@IntegrationEventHandler(Event, { timeoutMs }) or consumer.handlerTimeoutMs if it needs longer.',
    );
  }
}
