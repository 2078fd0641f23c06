/**
 * Retries `assertion` until it stops throwing, or fails with its last error after `timeoutMs`.
 * The one way tests wait: on a condition, with a deadline, never a bare sleep.
 */
export async function eventually<T>(
  assertion: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 20 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await assertion();
    } catch (error) {
      if (Date.now() >= deadline) {
        if (error instanceof Error) error.message = `Still failing after ${timeoutMs} ms: ${error.message}`;
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}

/**
 * Checks that `condition` stays true for the whole of `forMs`. For asserting that something does
 * NOT happen (a rolled-back event never arrives): polls, and fails at the first violation.
 */
export async function consistently(
  assertion: () => void | Promise<void>,
  { forMs = 500, intervalMs = 20 }: { forMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const until = Date.now() + forMs;
  while (Date.now() < until) {
    await assertion();
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  await assertion();
}
