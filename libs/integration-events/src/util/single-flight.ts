/**
 * At most one call of an operation at a time: a caller that comes while one runs shares its result, so
 * that callers on a timer (health probes, metric scrapes) never pile up queries behind a slow database.
 */
export class SingleFlight<T> {
  private current: { readonly promise: Promise<T>; readonly startedAt: number } | undefined;

  /**
   * @param maxAgeMs how long a call may be shared: one older than that (a query stuck on a dead
   *   connection, say) is left to finish alone and a new one starts, so that the callers see the service
   *   again once it answers
   */
  constructor(private readonly maxAgeMs = 30_000) {}

  run(start: () => Promise<T>): Promise<T> {
    const now = performance.now();
    if (!this.current || now - this.current.startedAt > this.maxAgeMs) {
      const started = { promise: start(), startedAt: now };
      this.current = started;
      const clear = (): void => {
        if (this.current === started) this.current = undefined;
      };
      started.promise.then(clear, clear);
    }
    return this.current.promise;
  }
}
