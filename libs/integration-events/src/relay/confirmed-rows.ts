/**
 * Rows the broker has confirmed and the relay has not yet marked sent, by lease token (a mark only
 * touches rows still held under the token they were claimed or handed over with). They stay leased
 * while they wait here, so no relay claims them again. Held briefly, so that the rows of several small
 * batches are marked by one statement instead of one each. Rows whose mark failed come back here (`putBack`)
 * to be tried again with the next marks, for as long as their lease lasts: the broker has them, and a row
 * marked sent late is one the relay does not send twice.
 */
export class ConfirmedRows {
  private readonly byToken = new Map<string, string[]>();
  private count = 0;
  /** `performance.now()` when the oldest row held came in. */
  private oldestAt = 0;
  /** Rows put back after a failed mark: `performance.now()` of their first failed mark. */
  private readonly failedSince = new Map<string, number>();

  get size(): number {
    return this.count;
  }

  /** How long the oldest row has waited for its mark, in ms; 0 when none waits. */
  age(now: number = performance.now()): number {
    return this.count === 0 ? 0 : now - this.oldestAt;
  }

  add(ids: readonly string[], leaseToken: string): void {
    if (ids.length === 0) return;
    if (this.count === 0) this.oldestAt = performance.now();
    const held = this.byToken.get(leaseToken);
    if (held) held.push(...ids);
    else this.byToken.set(leaseToken, [...ids]);
    this.count += ids.length;
  }

  /** How many rows held are waiting again after a failed mark. */
  get retrying(): number {
    return this.failedSince.size;
  }

  /**
   * Holds again rows whose mark failed, for the next marks to try, unless their first failed mark is
   * `giveUpAfterMs` old or older: those are left to their lease (another claim sends them again).
   * @returns the ids given up
   */
  putBack(ids: readonly string[], leaseToken: string, giveUpAfterMs: number, now: number = performance.now()): string[] {
    const kept: string[] = [];
    const givenUp: string[] = [];
    for (const id of ids) {
      const since = this.failedSince.get(id) ?? now;
      if (now - since >= giveUpAfterMs) {
        this.failedSince.delete(id);
        givenUp.push(id);
      } else {
        this.failedSince.set(id, since);
        kept.push(id);
      }
    }
    this.add(kept, leaseToken);
    return givenUp;
  }

  /** Rows now marked: they no longer count as retried. */
  marked(ids: readonly string[]): void {
    if (this.failedSince.size === 0) return;
    for (const id of ids) this.failedSince.delete(id);
  }

  /** Everything held, as [lease token, ids] pairs; leaves this empty. */
  takeAll(): Array<[leaseToken: string, ids: string[]]> {
    const all = [...this.byToken];
    this.byToken.clear();
    this.count = 0;
    return all;
  }
}
