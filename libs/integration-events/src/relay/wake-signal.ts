import { Injectable } from '@nestjs/common';

/**
 * A level-triggered doorbell between the code that commits outbox rows and the relay. A ring never
 * blocks and is never lost: a ring while the relay is busy makes its next `wait()` return at once, and
 * many rings collapse into one. `notify()` also asks the relay to look in the outbox table (rows it has
 * to claim); `ring()` only wakes it (rows handed to it directly).
 */
@Injectable()
export class WakeSignal {
  private rung = false;
  private claimRequested = false;
  private wake: (() => void) | undefined;

  /** There are rows in the outbox table for the relay to claim: wake it and have it look. */
  notify(): void {
    this.claimRequested = true;
    this.ring();
  }

  /** Wakes the relay without asking it to look in the table. */
  ring(): void {
    this.rung = true;
    this.wake?.();
  }

  /** Whether a `notify()` came since the last call (and forgets it). */
  takeClaimRequest(): boolean {
    const requested = this.claimRequested;
    this.claimRequested = false;
    return requested;
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
