import { resolveRetryPolicy, RetryPolicyOptionError } from './resolve-retry-policy';

describe('RetryPolicy', () => {
  describe('defaults', () => {
    it('is 10 attempts, 1 s doubling to at most 5 min, 20 % jitter, every error retryable', () => {
      const policy = resolveRetryPolicy();
      expect(policy).toMatchObject({ maxAttempts: 10, initialDelayMs: 1_000, multiplier: 2, maxDelayMs: 300_000, jitter: 0.2 });
      expect(policy.retryable(new Error('x'))).toBe(true);
    });
  });

  describe('delays', () => {
    const noJitter = () => 0;
    it('grows exponentially from the first retry and stops at the cap', () => {
      const policy = resolveRetryPolicy({ initialDelayMs: 100, multiplier: 3, maxDelayMs: 1_000 });
      expect([2, 3, 4, 5, 6].map((attempt) => policy.delayBefore(attempt, noJitter))).toEqual([100, 300, 900, 1_000, 1_000]);
    });

    it('takes jitter off the planned delay, never adds to it', () => {
      const policy = resolveRetryPolicy({ initialDelayMs: 1_000, jitter: 0.2 });
      expect(policy.delayBefore(2, () => 0)).toBe(1_000);
      expect(policy.delayBefore(2, () => 0.5)).toBe(900);
      expect(policy.delayBefore(2, () => 0.999_999)).toBe(800);
    });

    it('survives absurd attempt numbers without overflowing', () => {
      const policy = resolveRetryPolicy({ maxDelayMs: 5_000 });
      expect(policy.delayBefore(1_000_000, () => 0)).toBe(5_000);
      expect(resolveRetryPolicy({ multiplier: 1, maxDelayMs: 5_000 }).delayBefore(1_000_000, () => 0)).toBe(1_000);
    });

    it('keeps growing past 64 steps when the multiplier is small, up to the cap', () => {
      const policy = resolveRetryPolicy({ initialDelayMs: 1_000, multiplier: 1.05, maxDelayMs: 300_000, maxAttempts: 150 });
      // Attempt 100 waits 1.05^98 s, about 119 s (not the 22.7 s of 1.05^64).
      expect(policy.delayBefore(100, () => 0)).toBe(Math.round(1_000 * 1.05 ** 98));
      expect(policy.delayBefore(100, () => 0)).toBeGreaterThan(118_000);
      expect(policy.delayBefore(150, () => 0)).toBe(300_000);
    });
  });

  describe('wait tiers', () => {
    it('buckets delays by powers of two from the initial delay up to the cap', () => {
      const policy = resolveRetryPolicy({ initialDelayMs: 1_000, maxDelayMs: 300_000 });
      expect(policy.tiers()).toEqual([0, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000]);
      expect(policy.tierFor(800)).toBe(0);
      expect(policy.tierFor(1_999)).toBe(0);
      expect(policy.tierFor(2_000)).toBe(2_000);
      expect(policy.tierFor(300_000)).toBe(256_000);
      expect(policy.tierCeiling(0)).toBe(2_000);
      expect(policy.tierCeiling(256_000)).toBe(300_000);
    });

    it('puts every possible delay of the policy in a tier whose ceiling holds it', () => {
      const policy = resolveRetryPolicy({ initialDelayMs: 250, multiplier: 3, maxDelayMs: 60_000, jitter: 0.5 });
      for (let attempt = 2; attempt <= 12; attempt++) {
        for (const random of [0, 0.5, 0.999]) {
          const delay = policy.delayBefore(attempt, () => random);
          const tier = policy.tierFor(delay);
          expect(tier).toBeLessThanOrEqual(delay);
          expect(policy.tierCeiling(tier)).toBeGreaterThanOrEqual(delay);
        }
      }
    });

    it('needs a single tier when the cap is the initial delay', () => {
      expect(resolveRetryPolicy({ initialDelayMs: 500, maxDelayMs: 500 }).tiers()).toEqual([0]);
    });
  });

  describe('options', () => {
    it('merges layers field by field, later layers winning', () => {
      const policy = resolveRetryPolicy({ maxAttempts: 5, initialDelayMs: 10 }, { maxAttempts: 3 });
      expect(policy).toMatchObject({ maxAttempts: 3, initialDelayMs: 10 });
    });

    it.each([
      [{ maxAttempts: 0 }, 'maxAttempts'],
      [{ maxAttempts: 2.5 }, 'maxAttempts'],
      [{ initialDelayMs: -1 }, 'initialDelayMs'],
      [{ initialDelayMs: 100, maxDelayMs: 50 }, 'maxDelayMs'],
      [{ multiplier: 0.5 }, 'multiplier'],
      [{ jitter: -0.1 }, 'jitter'],
      [{ retryable: true }, 'retryable'],
      [{ tries: 3 }, 'tries'],
    ])('refuses %j, naming %s', (options, field) => {
      let error: unknown;
      try {
        resolveRetryPolicy(options as never);
      } catch (thrown) {
        error = thrown;
      }
      expect(error).toBeInstanceOf(RetryPolicyOptionError);
      expect((error as RetryPolicyOptionError).field).toBe(field);
    });
  });
});
