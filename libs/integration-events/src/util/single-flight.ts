/**
 * At most one call of an operation at a time: a caller that comes while one runs shares its result, so
 * that callers on a timer (health probes, metric scrapes) never pile up queries behind a slow database.
 */
export class SingleFlight<T> {
  private current: Promise<T> | undefined;

  run(start: () => Promise<T>): Promise<T> {
    if (!this.current) {
      const started = start();
      this.current = started;
      const clear = (): void => {
        if (this.current === started) this.current = undefined;
      };
      started.then(clear, clear);
    }
    return this.current;
  }
}
