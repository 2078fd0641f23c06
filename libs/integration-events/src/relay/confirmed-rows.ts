/** Rows to mark sent by one statement: all held under one lease token. */
export interface MarkSet {
  readonly leaseToken: string;
  readonly ids: string[];
  /** Rows whose mark failed before: tried once with each later set of marks, apart from the rows confirmed since; a failure does not fail the round. */
  readonly retry: boolean;
}

/**
 * Rows the broker has confirmed and the relay has not yet marked sent, by lease token (a mark only
 * touches rows still held under the token they were claimed or handed over with). Held briefly, so that
 * the rows of several small batches are marked by one statement instead of one each.
 *
 * Rows whose mark failed come back here (`putBack`), apart from the others, to be tried again with later
 * marks until half a lease has passed since their first failed mark: the broker has them, and a row
 * marked sent late is one the relay does not send twice. A late mark is never wrong: once a relay has
 * claimed a row again, its lease token differs and the mark matches nothing.
 */
export class ConfirmedRows {
  private readonly fresh = new Map<string, string[]>();
  private readonly failed = new Map<string, string[]>();
  private count = 0;
  /** `performance.now()` when the oldest row held came in. */
  private oldestAt = 0;
  /**
   * Rows put back after a failed mark and not yet marked or given up, by lease token and id (a row
   * claimed again goes out under another token, and starts afresh): `performance.now()` of the first failure.
   */
  private readonly failedSince = new Map<string, number>();

  get size(): number {
    return this.count;
  }

  /** How many rows (held here or in a mark under way) are being tried again after a failed mark. */
  get retrying(): number {
    return this.failedSince.size;
  }

  /** How long the oldest row has waited for its mark, in ms; 0 when none waits. */
  age(now: number = performance.now()): number {
    return this.count === 0 ? 0 : now - this.oldestAt;
  }

  add(ids: readonly string[], leaseToken: string): void {
    this.hold(this.fresh, ids, leaseToken);
  }

  /**
   * Holds again rows whose mark failed, for the next marks to try, unless their first failed mark is
   * `giveUpAfterMs` old or older: those are left to their lease (a later claim sends them again).
   * @returns the ids given up
   */
  putBack(ids: readonly string[], leaseToken: string, giveUpAfterMs: number, now: number = performance.now()): string[] {
    const kept: string[] = [];
    const givenUp: string[] = [];
    for (const id of ids) {
      const key = failureKey(leaseToken, id);
      const since = this.failedSince.get(key) ?? now;
      if (now - since >= giveUpAfterMs) {
        this.failedSince.delete(key);
        givenUp.push(id);
      } else {
        this.failedSince.set(key, since);
        kept.push(id);
      }
    }
    this.hold(this.failed, kept, leaseToken);
    return givenUp;
  }

  /** Rows now marked: they no longer count as retried. */
  marked(ids: readonly string[], leaseToken: string): void {
    if (this.failedSince.size === 0) return;
    for (const id of ids) this.failedSince.delete(failureKey(leaseToken, id));
  }

  /** Everything held, one set per lease token: the rows confirmed since the last marks, then those tried again. Leaves this empty. */
  takeAll(): MarkSet[] {
    const sets: MarkSet[] = [
      ...[...this.fresh].map(([leaseToken, ids]) => ({ leaseToken, ids, retry: false })),
      ...[...this.failed].map(([leaseToken, ids]) => ({ leaseToken, ids, retry: true })),
    ];
    this.fresh.clear();
    this.failed.clear();
    this.count = 0;
    return sets;
  }

  private hold(into: Map<string, string[]>, ids: readonly string[], leaseToken: string): void {
    if (ids.length === 0) return;
    if (this.count === 0) this.oldestAt = performance.now();
    const held = into.get(leaseToken);
    if (held) held.push(...ids);
    else into.set(leaseToken, [...ids]);
    this.count += ids.length;
  }
}

function failureKey(leaseToken: string, id: string): string {
  return `${leaseToken} ${id}`;
}
