import type { DeadLetterReason } from '../dead-letter/dead-letter.interface';

/** What went wrong with one attempt, trimmed for headers. */
export interface FailureDetails {
  readonly name: string;
  readonly message: string;
  readonly stack: string | undefined;
  readonly failedAt: Date;
}

/** What the transport must do with a message once the dispatcher is done with it. */
export type Disposition =
  /** Handled: acknowledge. */
  | { readonly action: 'ack' }
  /** The attempt failed and may be retried: deliver a copy to this handler again after `delayMs`. */
  | {
      readonly action: 'retry';
      /** The attempt that failed. */
      readonly attempt: number;
      readonly nextAttempt: number;
      readonly delayMs: number;
      readonly failure: FailureDetails;
      /** The event's name, as decoded (from its header, or its routing key when the header is absent). */
      readonly eventName: string;
    }
  /** Give up: move the message to the handler's dead-letter queue. */
  | {
      readonly action: 'dead-letter';
      readonly reason: DeadLetterReason;
      /** Handler calls made; for poison, the attempts before this delivery (by its `ie-attempt`). */
      readonly attempts: number;
      readonly failure: FailureDetails;
      readonly messageId: string | undefined;
      readonly eventName: string | undefined;
      readonly eventVersion: number | undefined;
    };
