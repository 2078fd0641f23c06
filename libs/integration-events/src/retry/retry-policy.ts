import type { RetryPolicyOptions } from './retry-policy-options.interface';

/** The defaults of `RetryPolicyOptions`. */
export const DEFAULT_RETRY_POLICY = {
  maxAttempts: 10,
  initialDelayMs: 1_000,
  multiplier: 2,
  maxDelayMs: 300_000,
  jitter: 0.2,
} as const;

/**
 * A resolved retry policy: how many attempts, how long to wait before each, which errors to retry.
 * Pure and immutable; `resolveRetryPolicy()` builds it from options and validates them.
 */
export class RetryPolicy {
  constructor(
    readonly maxAttempts: number,
    readonly initialDelayMs: number,
    readonly multiplier: number,
    readonly maxDelayMs: number,
    readonly jitter: number,
    readonly retryable: (error: unknown) => boolean,
  ) {}

  /**
   * How long to wait before attempt `nextAttempt` (2 for the first retry): exponential, capped, minus up
   * to `jitter` of itself.
   */
  delayBefore(nextAttempt: number, random: () => number = Math.random): number {
    const exponent = Math.max(0, nextAttempt - 2);
    // Not capped: a multiplier near 1 takes far more than 64 steps to reach maxDelayMs, and a power too
    // large for a number is Infinity, which the cap turns into maxDelayMs.
    const planned = Math.min(this.maxDelayMs, this.initialDelayMs * this.multiplier ** exponent);
    return Math.max(1, Math.round(planned * (1 - this.jitter * random())));
  }

  /**
   * The wait tiers: RabbitMQ (without the delayed-message plugin) delays with TTL queues, and a queue only
   * expires messages at its head, so a long delay must never sit in front of a short one. Delays are
   * bucketed by powers of two from `initialDelayMs` up to `maxDelayMs`; each bucket has its own wait
   * queue, where per-message TTLs differ by less than the bucket's width.
   *
   * @returns the lower bound of every tier, in ms, ascending (the first is 0)
   */
  tiers(): number[] {
    const bounds = [0];
    for (let bound = this.initialDelayMs * 2; bound < this.maxDelayMs; bound *= 2) bounds.push(bound);
    return bounds;
  }

  /** The tier a delay waits in: the largest lower bound at or below it. */
  tierFor(delayMs: number): number {
    const tiers = this.tiers();
    let tier = tiers[0]!;
    for (const bound of tiers) if (bound <= delayMs) tier = bound;
    return tier;
  }

  /** The longest delay a tier holds (no copy waits longer in its queue): the next tier's lower bound, or `maxDelayMs`. */
  tierCeiling(tier: number): number {
    return this.tiers().find((bound) => bound > tier) ?? this.maxDelayMs;
  }
}
