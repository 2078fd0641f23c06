/**
 * How a failing handler is retried. Set for every handler with the module's `consumer.retry`, and per
 * handler with `@IntegrationEventHandler(Event, { retry })` (fields given there win).
 */
export interface RetryPolicyOptions {
  /**
   * Handler calls in total before the message is dead-lettered: the first try plus up to
   * `maxAttempts - 1` retries. CAP's "retry 10 times" counts retries after the first failure (11 calls);
   * here 10 means the handler is called at most 10 times.
   * @default 10
   */
  maxAttempts?: number;

  /**
   * Delay before the second attempt, in ms.
   * @default 1000
   */
  initialDelayMs?: number;

  /**
   * Each further delay is the previous one times this.
   * @default 2
   */
  multiplier?: number;

  /**
   * No delay is longer than this, in ms.
   * @default 300000 (5 minutes)
   */
  maxDelayMs?: number;

  /**
   * Fraction of each delay that is random: a delay `d` becomes `d × (1 − jitter × random)`, so retries of
   * messages that failed together spread out, never later than planned. 0 turns jitter off.
   * @default 0.2
   */
  jitter?: number;

  /**
   * Decides whether an error is worth retrying; `false` sends the message to the dead-letter queue at
   * once. `NonRetryableError` is never retried, whatever this says.
   * @default () => true
   */
  retryable?: (error: unknown) => boolean;
}
