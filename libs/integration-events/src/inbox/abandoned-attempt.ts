import type { QueryRunner } from 'typeorm';
import type { AbandonState } from './inbox.guard';

const KEY = Symbol('nestjs-integration-events:abandoned-attempt');

/**
 * Ties a handler attempt's abandon state (its timeout) to the transaction the inbox runs it
 * in, so that code running at that transaction's commit — the cqrs bridge's domain-event handlers,
 * before `COMMIT` — can refuse to commit an attempt given up meanwhile.
 */
export const AbandonedAttempt = {
  attach(queryRunner: QueryRunner, state: AbandonState): void {
    (queryRunner.data as Record<PropertyKey, unknown>)[KEY] = state;
  },

  /**
   * Unties it once the transaction has ended: a query runner may outlive its transaction (TypeORM runs
   * every transaction of a better-sqlite3 DataSource on the same one).
   */
  detach(queryRunner: QueryRunner, state: AbandonState): void {
    const data = queryRunner.data as Record<PropertyKey, unknown>;
    if (data[KEY] === state) delete data[KEY];
  },

  /** Throws the reason when the attempt running in `queryRunner`'s transaction was given up. */
  assertNot(queryRunner: QueryRunner): void {
    const state = (queryRunner.data as Record<PropertyKey, unknown>)[KEY] as AbandonState | undefined;
    if (state?.aborted) throw state.reason ?? new Error('The attempt was abandoned');
  },

  /** The same, as the last check before `COMMIT`: the attempt then commits (see `AbandonState.beginCommit`). */
  assertNotAndBeginCommit(queryRunner: QueryRunner): void {
    AbandonedAttempt.assertNot(queryRunner);
    ((queryRunner.data as Record<PropertyKey, unknown>)[KEY] as AbandonState | undefined)?.beginCommit?.();
  },
};
