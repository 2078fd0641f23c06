/** A message a service published, as the test kit recorded it. */
export interface PublishedMessage {
  readonly messageId: string | undefined;
  readonly eventName: string;
  readonly eventVersion: number | undefined;
  /** Every header, the `ie-*` contract headers included. */
  readonly headers: Readonly<Record<string, unknown>>;
  /** The body, parsed. */
  readonly payload: unknown;
  /** False when no queue was bound for it (the outbox row is then flagged unroutable). */
  readonly routed: boolean;
}
