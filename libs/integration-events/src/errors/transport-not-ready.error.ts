import { IntegrationEventsError } from './integration-events.error';

/** The broker connection is down; nothing was sent. The relay waits and tries again. */
export class TransportNotReadyError extends IntegrationEventsError {
  constructor() {
    super('The RabbitMQ connection is not open; nothing was published.');
  }
}
