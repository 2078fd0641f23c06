import type { EntityManager } from 'typeorm';
import type { MessageHeadersRecord } from '../envelope/outgoing-message';

/** Options of `IntegrationEventPublisher.publish()`. */
export interface PublishOptions {
  /**
   * The EntityManager of the transaction to write the outbox rows in. Without it, `publish()` joins
   * the ambient `@nestjs-cls/transactional` transaction.
   * @default the ambient transaction
   */
  manager?: EntityManager;

  /**
   * With no transaction to join, write the rows in a transaction of their own instead of refusing.
   * Only for events that protect no business write (a scheduled job, a replay script).
   * @default false
   */
  standalone?: boolean;

  /**
   * Application headers sent with every event of this call. Names may not start with `ie-` or `x-`;
   * values are strings, finite numbers or booleans.
   * @default {}
   */
  headers?: MessageHeadersRecord;

  /**
   * Correlation id of the business flow.
   * @default the ambient one (the HTTP request's `x-correlation-id`, or the correlation id of the
   * integration event being handled), else the event's own message id: the event starts a new flow
   */
  correlationId?: string;

  /**
   * Id of the message or request that caused this event.
   * @default the ambient one (the HTTP request's id, or the id of the integration event being handled),
   * else none
   */
  causationId?: string;

  /**
   * When the event happened: from 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z (AMQP's
   * `timestamp` property is unsigned; the header is ISO 8601 with a four-digit year).
   * @default now
   */
  occurredAt?: Date;

  /**
   * Publish the event this many milliseconds after the `publish()` call, not at once (CAP's
   * PublishDelay): the row waits in the outbox and the relay sends it once it is due, within about
   * `relay.pollIntervalMs`. A whole number from 0 to 366 days. Give `delay` or `deliverAt`, not both.
   * @default 0
   */
  delay?: number;

  /** Publish the event at this time, not at once. A time in the past publishes at once; the latest is 9999-12-31T23:59:59.999Z. */
  deliverAt?: Date;
}
