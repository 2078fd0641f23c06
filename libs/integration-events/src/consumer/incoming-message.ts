/** A message as a transport hands it to the dispatcher. */
export interface IncomingMessage {
  readonly body: Buffer;
  /** The AMQP `message_id` property (or the in-memory equivalent); untrusted. */
  readonly messageId: unknown;
  readonly routingKey: string;
  /** Headers as received; untrusted. */
  readonly headers: Readonly<Record<string, unknown>>;
  readonly redelivered: boolean;
  /**
   * Whether it came through the topic exchange with its handler's event name as routing key (its publish,
   * through the binding every queue of the event has), not straight into this queue (a retry, a requeued
   * dead letter) nor through another binding.
   */
  readonly routed: boolean;
}
