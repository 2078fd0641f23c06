import { IntegrationEventsError } from './integration-events.error';

/**
 * Two handlers resolved to the same queue. Each handler owns its queue (that is what lets one
 * handler be retried without re-running the others), so this fails application boot.
 */
export class DuplicateHandlerQueueError extends IntegrationEventsError {
  constructor(
    readonly queue: string,
    readonly handlers: readonly [string, string],
    /** Set when the queue is a retry wait queue of this handler (`<queue>.retry.<tier>ms`) that the other one names. */
    readonly waitQueueOf?: string,
  ) {
    super(
      `Handlers ${handlers[0]} and ${handlers[1]} both resolve to queue "${queue}"` +
        `${waitQueueOf ? ` (a retry wait queue of ${waitQueueOf}'s, on RabbitMQ)` : ''}. Give one of them ` +
        `its own name with @IntegrationEventHandler(Event, { queue: '...' }), or remove the duplicate ` +
        'provider (a handler class registered in two modules is two instances).',
    );
  }
}
