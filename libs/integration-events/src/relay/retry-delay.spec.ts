import { exponentialBackoff, failedAttemptsSpanning } from './retry-delay';

const lowest = (): number => 0;
const middle = (): number => 0.5;
const highest = (): number => 0.999_999_999;

describe('exponentialBackoff', () => {
  describe('the step doubles with each attempt', () => {
    it.each([
      [1, 1_000],
      [2, 2_000],
      [3, 4_000],
      [4, 8_000],
      [5, 16_000],
    ])('attempt %d has a step of %d ms', (attempt, step) => {
      expect(exponentialBackoff(attempt, 1_000, 1_000_000, lowest)).toBe(step / 2);
      expect(exponentialBackoff(attempt, 1_000, 1_000_000, highest)).toBe(step);
    });
  });

  describe('equal jitter: half the step fixed, half random', () => {
    it('never goes below half the step', () => {
      expect(exponentialBackoff(3, 1_000, 60_000, lowest)).toBe(2_000);
    });

    it('reaches the full step at the top of the random range', () => {
      expect(exponentialBackoff(3, 1_000, 60_000, highest)).toBe(4_000);
    });

    it('scales linearly with the random draw in between', () => {
      expect(exponentialBackoff(3, 1_000, 60_000, middle)).toBe(3_000);
      expect(exponentialBackoff(3, 1_000, 60_000, () => 0.25)).toBe(2_500);
    });

    it('rounds to whole milliseconds', () => {
      expect(exponentialBackoff(1, 5, 60_000, () => 0.3)).toBe(3); // 2.5 + 0.75 = 3.25
      expect(Number.isInteger(exponentialBackoff(1, 3, 60_000, () => 0.123))).toBe(true);
    });

    it('calls random once per delay', () => {
      const random = jest.fn(middle);
      exponentialBackoff(2, 1_000, 60_000, random);
      expect(random).toHaveBeenCalledTimes(1);
    });

    it('uses Math.random when no random function is given', () => {
      const spy = jest.spyOn(Math, 'random').mockReturnValue(0);
      try {
        expect(exponentialBackoff(2, 1_000, 60_000)).toBe(1_000);
        expect(spy).toHaveBeenCalledTimes(1);
      } finally {
        spy.mockRestore();
      }
    });
  });

  describe('the upper bound', () => {
    it('caps the step at maxMs', () => {
      expect(exponentialBackoff(7, 1_000, 60_000, highest)).toBe(60_000); // 64 s step capped at 60 s
      expect(exponentialBackoff(7, 1_000, 60_000, lowest)).toBe(30_000);
    });

    it('stays at maxMs for huge attempt counts instead of overflowing', () => {
      for (const attempt of [50, 1_000, 1e9, Number.MAX_SAFE_INTEGER]) {
        expect(exponentialBackoff(attempt, 1_000, 60_000, highest)).toBe(60_000);
        expect(exponentialBackoff(attempt, 1_000, 60_000, lowest)).toBe(30_000);
      }
    });

    it('caps the first step too when initialMs exceeds maxMs', () => {
      expect(exponentialBackoff(1, 5_000, 1_000, highest)).toBe(1_000);
    });
  });

  describe('attempts below 1', () => {
    it.each([0, -1, -100])('treats attempt %d as the first attempt', (attempt) => {
      expect(exponentialBackoff(attempt, 1_000, 60_000, lowest)).toBe(500);
      expect(exponentialBackoff(attempt, 1_000, 60_000, highest)).toBe(1_000);
    });
  });
});

describe('failedAttemptsSpanning', () => {
  it('counts the failures whose shortest waits add up to the duration', () => {
    // Halves of the steps 1, 2, 4, 8, 16, 32, 60 s: 0.5 + 1 + 2 + 4 + 8 + 16 + 30 = 61.5 s ≥ 60 s after the 8th failure.
    expect(failedAttemptsSpanning(60_000, 1_000, 60_000)).toBe(8);
    expect(failedAttemptsSpanning(61_500, 1_000, 60_000)).toBe(8);
    expect(failedAttemptsSpanning(61_501, 1_000, 60_000)).toBe(9);
    expect(failedAttemptsSpanning(500, 1_000, 60_000)).toBe(2);
    expect(failedAttemptsSpanning(501, 1_000, 60_000)).toBe(3);
    // Capped from the first step: 20 ms per failure.
    expect(failedAttemptsSpanning(1_000, 40, 40)).toBe(51);
  });

  it('matches the waits the relay draws at their shortest', () => {
    // Odd steps and steps of 1 ms included: the shortest wait is half the step, rounded (1 ms for 1 ms).
    for (const [duration, initial, max] of [[60_000, 1_000, 60_000], [1_000, 20, 40], [3_600_000, 7, 90_000], [60_000, 1, 60_000], [500, 1, 1], [1_000, 3, 7]] as const) {
      const attempts = failedAttemptsSpanning(duration, initial, max);
      const waited = (failures: number) =>
        Array.from({ length: failures - 1 }, (_, i) => exponentialBackoff(i + 1, initial, max, lowest)).reduce((a, b) => a + b, 0);
      expect(waited(attempts)).toBeGreaterThanOrEqual(duration);
      expect(waited(attempts - 1)).toBeLessThan(duration);
    }
  });

  it('takes every row with a failure for no duration, and no row for an endless one', () => {
    expect(failedAttemptsSpanning(0, 1_000, 60_000)).toBe(1);
    expect(failedAttemptsSpanning(Number.NaN, 1_000, 60_000)).toBe(1);
    expect(failedAttemptsSpanning(Number.POSITIVE_INFINITY, 1_000, 60_000)).toBe(2 ** 31 - 1);
  });
});
