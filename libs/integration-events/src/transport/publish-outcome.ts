/** What became of one message handed to the broker. */
export type PublishOutcome =
  /** The broker took responsibility for it (persisted and routed to at least one queue). */
  | { readonly status: 'confirmed' }
  /** The broker confirmed it but no queue was bound for its routing key: nobody will ever see it. */
  | { readonly status: 'unroutable'; readonly reason: string }
  /** Nacked, timed out or cut off: whether the broker has it is unknown, so it must be sent again. */
  | { readonly status: 'failed'; readonly reason: string }
  /**
   * Never written to the connection (its channel closed, or the batch's time ran out, before its turn):
   * the broker cannot have it, and it was not an attempt.
   */
  | { readonly status: 'unsent'; readonly reason: string };
