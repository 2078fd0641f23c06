import { AsyncLocalStorage } from 'node:async_hooks';
import { TransactionRollingBackError } from '../errors/transaction-rolling-back.error';

/**
 * One level's dispatch of domain events under way (a savepoint's release, or the commit): its handlers
 * run in the transaction while TypeORM waits for the commit hooks. TypeORM rolls back as soon as one of
 * those hooks throws, without waiting for the others: the rollback stops the dispatch and waits for it.
 */
export class LevelDispatch {
  /** Set when a rollback of its level (or one further out) began: nothing more may start. */
  private stopped = false;
  private finish!: () => void;
  /** Settles when the dispatch has ended, however. */
  readonly ended = new Promise<void>((resolve) => (this.finish = resolve));

  constructor(
    /** The savepoint depth whose events it handles (1 = the transaction itself). */
    readonly level: number,
    /** The dispatch whose handler this one runs in (a savepoint released inside that handler), if any. */
    readonly outer: LevelDispatch | undefined,
  ) {}

  /** Throws `TransactionRollingBackError` once a rollback stopped it. Checked before anything starts. */
  assertRunning(): void {
    if (this.stopped) throw new TransactionRollingBackError();
  }

  /** @internal */
  stop(): void {
    this.stopped = true;
  }

  /** @internal */
  end(): void {
    this.finish();
  }

  /** Whether code running in this dispatch (or in one it runs in) would wait on `other` to end. */
  runsWithin(other: LevelDispatch): boolean {
    for (let dispatch: LevelDispatch | undefined = this; dispatch; dispatch = dispatch.outer) if (dispatch === other) return true;
    return false;
  }
}

/**
 * The dispatch the running code is part of: a rollback called from a domain-event handler must not
 * wait for the dispatch that awaits that very handler.
 */
export const currentDispatch = new AsyncLocalStorage<LevelDispatch>();
