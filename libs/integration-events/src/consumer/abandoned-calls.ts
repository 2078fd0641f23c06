/**
 * The inbox calls given up on their timeout that still run (a handler that ignores its `signal`), by
 * handler queue and message. Such a call holds its transaction and its inbox record's row lock until it
 * ends: a retry of the same message would wait on that lock in PostgreSQL, holding a connection of the
 * pool, and so would each retry after it, one connection each, for as long as the call hangs. A retry in
 * this process waits here instead, without a connection, then starts its transaction.
 */
export class AbandonedCalls {
  private readonly running = new Map<string, Promise<void>>();

  /** Notes a call given up on: until it settles, `of()` of its message gives a promise of its end. */
  add(queue: string, messageId: string, call: Promise<unknown>): void {
    const key = keyOf(queue, messageId);
    const ended = call.then(
      () => undefined,
      () => undefined,
    );
    // A retry given up while it waited here ends with the call it waited for: waiting for both is the same.
    const earlier = this.running.get(key);
    const all = earlier ? Promise.all([earlier, ended]).then(() => undefined) : ended;
    this.running.set(key, all);
    void all.then(() => {
      if (this.running.get(key) === all) this.running.delete(key);
    });
  }

  /** Settles once no given-up call of that message runs; `undefined` when none does. */
  of(queue: string, messageId: string): Promise<void> | undefined {
    return this.running.get(keyOf(queue, messageId));
  }
}

function keyOf(queue: string, messageId: string): string {
  // Neither a queue name nor a message id holds a newline (both are checked before any call).
  return `${queue}\n${messageId}`;
}
