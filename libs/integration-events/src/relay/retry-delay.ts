/**
 * Exponential backoff with "equal jitter": half the delay is fixed, half random, so retries of many
 * rows that failed together spread out but none comes back sooner than half its step.
 *
 * @param attempt failed attempts so far, from 1
 */
export function exponentialBackoff(attempt: number, initialMs: number, maxMs: number, random = Math.random): number {
  const step = backoffStep(attempt, initialMs, maxMs);
  return Math.round(step / 2 + random() * (step / 2));
}

/** The step of failed attempt `attempt` (from 1): `initialMs` doubled per attempt, capped at `maxMs`. */
function backoffStep(attempt: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 40));
}

/**
 * The fewest failed attempts that prove a row has been failing for at least `durationMs`: between its
 * first and its n-th failure it waited at least half of each step before, rounded as
 * `exponentialBackoff()` rounds it (a step of 1 ms waits 1 ms), whatever the jitter drew. At most
 * 2^31 − 1 (the attempts column's range), which no row reaches.
 */
export function failedAttemptsSpanning(durationMs: number, initialMs: number, maxMs: number): number {
  const most = 2 ** 31 - 1;
  if (!(durationMs > 0)) return 1;
  let attempts = 1;
  let waited = 0;
  for (;;) {
    const half = Math.round(backoffStep(attempts, initialMs, maxMs) / 2);
    if (half <= 0) return most;
    if (half === Math.round(maxMs / 2)) {
      // The step is at its cap from here on: the rest is a division.
      return Math.min(most, attempts + Math.ceil(Math.max(0, durationMs - waited) / half));
    }
    if (waited >= durationMs) return attempts;
    waited += half;
    attempts++;
  }
}
