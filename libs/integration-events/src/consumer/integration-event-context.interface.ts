/** What a handler knows about the message it is handling, besides the event itself. */
export interface IntegrationEventContext {
  /** Id of the message: the same on every delivery and re-publish of one event. Use it to deduplicate. */
  readonly messageId: string;
  /** Wire name of the event (`ie-event-name`). */
  readonly eventName: string;
  /** Schema version of the event (`ie-event-version`). */
  readonly eventVersion: number;
  /** When the event happened, as stamped by the publisher. */
  readonly occurredAt: Date;
  /** `serviceName` of the publishing service. */
  readonly sourceService: string | undefined;
  /** Correlation id of the business flow this event belongs to. */
  readonly correlationId: string | undefined;
  /** Id of the message or request that caused this event, if the publisher said. */
  readonly causationId: string | undefined;
  /** Which attempt this is at handling the message, from 1. */
  readonly attempt: number;
  /** True when the broker delivered this message before (a consumer died without acknowledging it). */
  readonly redelivered: boolean;
  /** Every AMQP header of the message, as received. */
  readonly headers: Readonly<Record<string, unknown>>;
  /** Queue the message was consumed from. */
  readonly queue: string;
  /**
   * Fires when the application shuts down while the handler runs (the seed's CancellationToken).
   * Pass it on to `fetch()` and other abortable calls; a handler that stops early should throw.
   */
  readonly signal: AbortSignal;
}
