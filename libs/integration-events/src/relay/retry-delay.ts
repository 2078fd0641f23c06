/**
 * Exponential backoff with "equal jitter": half the delay is fixed, half random, so retries of many
 * rows that failed together spread out but none comes back sooner than half its step.
 *
 * @param attempt failed attempts so far, from 1
 */
export function exponentialBackoff(attempt: number, initialMs: number, maxMs: number, random = Math.random): number {
  const step = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 40));
  return Math.round(step / 2 + random() * (step / 2));
}
