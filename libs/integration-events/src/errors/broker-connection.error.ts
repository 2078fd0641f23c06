import { IntegrationEventsError } from './integration-events.error';

/**
 * RabbitMQ refused this service at boot for a reason waiting will not fix (bad credentials, unknown
 * vhost, a queue declared elsewhere with other arguments). An unreachable broker is not this error:
 * the service then starts and connects when the broker comes up.
 */
export class BrokerConnectionError extends IntegrationEventsError {
  constructor(
    /** The broker URL with its password redacted. */
    readonly url: string,
    reason: string,
  ) {
    super(`RabbitMQ at ${url} refused this service: ${reason}`);
  }
}
