/**
 * The AMQP headers this library writes and reads. They are the wire contract between services:
 * a service written without this library (plain amqplib, another language) reads and writes these.
 *
 * All start with `ie-` so they never collide with application headers, and none starts with `x-`,
 * which RabbitMQ reserves (recent versions drop client-set `x-` headers).
 *
 * The message id travels in the standard AMQP `message_id` property, not in a header.
 */
export const MessageHeaders = {
  /** Stable name of the event (`ordering.order-created`); also the routing key. */
  EventName: 'ie-event-name',
  /** Integer version of the event's schema; a consumer refuses a version it does not know. */
  EventVersion: 'ie-event-version',
  /** When the event happened, ISO 8601 in UTC (`2026-11-26T06:00:00.000Z`). */
  OccurredAt: 'ie-occurred-at',
  /** `serviceName` of the publishing service. */
  SourceService: 'ie-source-service',
  /** Id shared by every message of one business flow, across services. */
  CorrelationId: 'ie-correlation-id',
  /** Id of the message (or request) whose handling published this one; absent for a flow's first event. */
  CausationId: 'ie-causation-id',
} as const;

/** Header names reserved by the library. Application headers may not start with these prefixes. */
export const RESERVED_HEADER_PREFIXES = ['ie-', 'x-'] as const;

/** Content type of every message body. */
export const MESSAGE_CONTENT_TYPE = 'application/json';
