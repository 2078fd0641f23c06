/**
 * Rows the broker has confirmed and the relay has not yet marked sent, by lease token (a mark only
 * touches rows still held under the token they were claimed or handed over with). They stay leased
 * while they wait here, so no relay claims them again. Held briefly, so that the rows of several small
 * batches are marked by one statement instead of one each.
 */
export class ConfirmedRows {
  private readonly byToken = new Map<string, string[]>();
  private count = 0;
  /** `performance.now()` when the oldest row held came in. */
  private oldestAt = 0;

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

  /** Everything held, as [lease token, ids] pairs; leaves this empty. */
  takeAll(): Array<[leaseToken: string, ids: string[]]> {
    const all = [...this.byToken];
    this.byToken.clear();
    this.count = 0;
    return all;
  }
}
