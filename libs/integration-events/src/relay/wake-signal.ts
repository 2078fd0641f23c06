import { Injectable } from '@nestjs/common';

/**
 * A level-triggered doorbell between the code that commits outbox rows and the relay. `notify()`
 * never blocks and never loses a ring: a ring while the relay is busy makes its next `wait()` return
 * at once, and many rings collapse into one.
 */
@Injectable()
export class WakeSignal {
  private rung = false;
  private wake: (() => void) | undefined;

  notify(): void {
    this.rung = true;
    this.wake?.();
  }

  /** Resolves on the next ring (or at once if one is pending), or after `timeoutMs`. */
  wait(timeoutMs: number): Promise<void> {
    if (this.rung) {
      this.rung = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        this.rung = false;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.wake = done;
    });
  }
}
