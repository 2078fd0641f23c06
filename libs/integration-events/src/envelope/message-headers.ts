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

  // Set by consumers on the copies they make when a handler fails (retries and dead letters). Never
  // trusted blindly: a missing, negative, huge or non-numeric attempt count is clamped to the policy.
  /** Which attempt the next delivery of this copy is (2 for the first retry). Absent on first delivery. */
  Attempt: 'ie-attempt',
  /** When the handler first failed on this message (ISO 8601). */
  FirstFailureAt: 'ie-first-failure-at',
  /** When the handler last failed on this message (ISO 8601). */
  LastFailureAt: 'ie-last-failure-at',
  /** `Name: message` of the last failure, on retry copies (trimmed). */
  LastError: 'ie-last-error',

  // Only on dead-lettered copies.
  /** `max-attempts`, `non-retryable` or `poison`. */
  DeadLetterReason: 'ie-dead-letter-reason',
  /** Attempts counted before dead-lettering (for poison: the attempts before that delivery, by its `ie-attempt`). */
  Attempts: 'ie-attempts',
  /** Name of the last error (its class). */
  ErrorName: 'ie-error-name',
  /** Message of the last error (at most 1,000 characters). */
  ErrorMessage: 'ie-error-message',
  /** Stack of the last error (at most 20 lines, 4,000 characters). */
  ErrorStack: 'ie-error-stack',
  /** Class name of the handler that gave up. */
  Handler: 'ie-handler',
  /** The handler's queue: where a requeued message goes back to. */
  Queue: 'ie-queue',
  /** When the message was dead-lettered (ISO 8601). */
  DeadLetteredAt: 'ie-dead-lettered-at',

  // Only on a retry or dead-letter copy whose headers did not fit amqplib's 64 KiB header table.
  /** Comma-separated names of the application headers left out of the copy. */
  DroppedHeaders: 'ie-dropped-headers',
} as const;

/** What only a dead letter carries: a retry copy leaves them out (it has `ie-attempt` and `ie-last-error`). */
export const DEAD_LETTER_HEADERS: readonly string[] = [
  MessageHeaders.DeadLetterReason,
  MessageHeaders.Attempts,
  MessageHeaders.ErrorName,
  MessageHeaders.ErrorMessage,
  MessageHeaders.ErrorStack,
  MessageHeaders.Handler,
  MessageHeaders.Queue,
  MessageHeaders.DeadLetteredAt,
];

/** Headers describing failures: removed when a dead letter is requeued, so its attempts start afresh. */
export const FAILURE_HEADERS: readonly string[] = [
  MessageHeaders.Attempt,
  MessageHeaders.FirstFailureAt,
  MessageHeaders.LastFailureAt,
  MessageHeaders.LastError,
  ...DEAD_LETTER_HEADERS,
];

/** Header names reserved by the library. Application headers may not start with these prefixes. */
export const RESERVED_HEADER_PREFIXES = ['ie-', 'x-'] as const;

/**
 * Headers RabbitMQ reads as more routing keys of a publish ("sender-selected distribution", exact
 * names): it closes the channel when they are not arrays of strings, and sends the message to the queues
 * they name besides. Application headers may not use them, and copies leave out a foreign publisher's.
 */
export const ROUTING_HEADERS: ReadonlySet<string> = new Set(['CC', 'BCC']);

/** Content type of every message body. */
export const MESSAGE_CONTENT_TYPE = 'application/json';
