/** Why a message ended in a dead-letter queue. */
export type DeadLetterReason =
  /** The handler failed on every one of its attempts. */
  | 'max-attempts'
  /** The handler threw `NonRetryableError`, or the policy's `retryable` said no. */
  | 'non-retryable'
  /** The message cannot be handled at all (not JSON, wrong shape, unknown version, ...): never retried. */
  | 'poison';

/** A dead-lettered message, as the `onDeadLetter` hook sees it (and as the dead-letter queue stores it). */
export interface DeadLetter {
  /** The message's id (`message_id`), if it had a usable one. */
  readonly messageId: string | undefined;
  readonly eventName: string | undefined;
  readonly eventVersion: number | undefined;
  /** The handler's queue the message came from. */
  readonly queue: string;
  /** Where it is now. */
  readonly deadLetterQueue: string;
  /** Class name of the handler. */
  readonly handler: string;
  readonly reason: DeadLetterReason;
  /**
   * Attempts counted (a call cut short by a shutdown or a lost channel is not); for a poison message, none
   * was made on this delivery: the attempts before it, by its `ie-attempt` (0 on a first delivery, more
   * when a retry copy turned poison).
   */
  readonly attempts: number;
  readonly firstFailureAt: Date;
  readonly lastFailureAt: Date;
  /** The last error; for poison messages, why the message was refused. */
  readonly error: { readonly name: string; readonly message: string; readonly stack: string | undefined };
  /** The headers of the dead-lettered copy: the original ones plus the failure headers. */
  readonly headers: Readonly<Record<string, unknown>>;
  /** The original body bytes. */
  readonly body: Buffer;
}
