import type { IntegrationEventContext } from './integration-event-context.interface';

/**
 * Contract of an integration event handler. Resolve to acknowledge the message; throw to fail this
 * attempt. The handler may be called more than once for one message (delivery is at-least-once), so
 * make its effects idempotent, using `context.messageId` as the key.
 */
export interface IIntegrationEventHandler<TEvent extends object = object> {
  handle(event: TEvent, context: IntegrationEventContext): Promise<void> | void;
}
