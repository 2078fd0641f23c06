/** A message inside the in-process broker: the same parts as an AMQP message. */
export interface InProcessMessage {
  readonly content: Buffer;
  readonly messageId: string | undefined;
  readonly routingKey: string;
  readonly headers: Readonly<Record<string, unknown>>;
  /** Other properties kept as they are (content type, correlation id, ...). */
  readonly properties: Readonly<Record<string, unknown>>;
  readonly redelivered: boolean;
  /** The exchange that routed it into its queue; absent when it was put there straight (`sendToQueue`). */
  readonly exchange?: string;
}
