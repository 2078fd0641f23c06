/** Values a message header may hold. */
export type HeaderValue = string | number | boolean;

/** Application headers, as given to `publish()` and as stored with the outbox row. */
export type MessageHeadersRecord = Record<string, HeaderValue>;

/**
 * One message ready for the broker, built from an outbox row. The transport maps it to AMQP:
 * `routingKey` → routing key, `messageId` → `message_id`, `headers` → headers (including the
 * `ie-*` contract headers), body → JSON bytes.
 */
export interface OutgoingMessage {
  readonly messageId: string;
  readonly routingKey: string;
  readonly body: Buffer;
  readonly headers: MessageHeadersRecord;
  readonly occurredAt: Date;
  readonly correlationId: string;
  readonly sourceService: string;
}
