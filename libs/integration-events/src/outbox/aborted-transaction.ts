import type { QueryRunner } from 'typeorm';
import { TransactionAbortedError } from '../errors/transaction-aborted.error';

/** The parts of a node-postgres client used here. */
interface PgClientState {
  /**
   * The session's status from the server's last ReadyForQuery: idle, in a transaction, or in a failed
   * one (node-postgres 8.21 on; its native client may answer `null`).
   */
  getTransactionStatus?(): 'I' | 'T' | 'E' | null;
  /** Whether that ReadyForQuery has come for everything sent so far (not in node-postgres' typings). */
  readyForQuery?: unknown;
  query(text: string): Promise<unknown>;
}

/** PostgreSQL's SQLSTATE for a statement sent to an aborted transaction. */
const IN_FAILED_SQL_TRANSACTION = '25P02';

/**
 * Where a transaction's query runner keeps its domain events (`DomainEventQueue`, the cqrs bridge's),
 * defined here so that the outbox can see whether the bridge will check the transaction after them.
 */
export const DOMAIN_EVENT_QUEUE_KEY = Symbol('nestjs-integration-events:domain-events');

/**
 * Throws `TransactionAbortedError` when `queryRunner`'s PostgreSQL transaction is aborted (a statement
 * in it failed and nothing rolled back to a savepoint since), which its `COMMIT` would silently turn
 * into a rollback. SQLite, where a failed statement does not abort the transaction, is never checked.
 *
 * node-postgres (8.21 on) keeps the status the server sent with its last ReadyForQuery, so this usually
 * costs no round trip. But a failed statement's error reaches its caller before its ReadyForQuery does:
 * while that message is still due, a `SELECT 1` queued behind it brings it. Without the status (an older
 * node-postgres, its native client) the `SELECT 1` itself answers: it fails with 25P02 in an aborted
 * transaction.
 */
export async function assertTransactionNotAborted(queryRunner: QueryRunner, what: string): Promise<void> {
  if (reopenIfRolledBackBySqlite(queryRunner) || wasRolledBackBySqlite(queryRunner)) throw new TransactionAbortedError(what, 'SQLite');
  if (queryRunner.dataSource.options.type !== 'postgres') return;
  const client = (queryRunner as unknown as { databaseConnection?: PgClientState }).databaseConnection;
  if (!client) return;
  if (typeof client.getTransactionStatus === 'function' && typeof client.readyForQuery === 'boolean') {
    if (!client.readyForQuery) await client.query('SELECT 1').catch(() => undefined);
    const status = client.getTransactionStatus();
    if (status === 'E') throw new TransactionAbortedError(what);
    if (status === 'T') return;
  }
  try {
    await client.query('SELECT 1');
  } catch (error) {
    if ((error as { code?: unknown }).code === IN_FAILED_SQL_TRANSACTION) throw new TransactionAbortedError(what);
    // Anything else (a connection lost) is the COMMIT's to report.
  }
}

/** Where a node-postgres client keeps the tag of the last statement it completed (`COMMIT`, `ROLLBACK` …). */
const LAST_COMMAND_TAG = Symbol('nestjs-integration-events:last-command-tag');

/** The parts of a node-postgres client (JavaScript, not native) used to follow command tags. */
interface PgClientConnection {
  connection?: { on?(event: 'commandComplete', listener: (message: { text?: unknown }) => void): unknown };
  [LAST_COMMAND_TAG]?: unknown;
}

/**
 * Starts noting, on `queryRunner`'s node-postgres connection (once per connection, for its life), the
 * tag PostgreSQL completes each statement with. An aborted transaction's COMMIT completes as
 * `ROLLBACK`, and TypeORM, which does not look, then runs its after-commit hooks all the same. The
 * checks before COMMIT cannot see every abort: a `beforeTransactionCommit` hook of the application,
 * running side by side with them, may send a statement after they passed, have it fail and catch the
 * error. Called as each outermost transaction starts (by `OutboxCommitSubscriber`); read with
 * `committedAsRollback`. node-postgres' native client has no such messages: there nothing is known.
 */
export function watchCommitOutcome(queryRunner: QueryRunner): void {
  if (queryRunner.dataSource.options.type !== 'postgres') return;
  const client = (queryRunner as unknown as { databaseConnection?: PgClientConnection }).databaseConnection;
  if (!client || client[LAST_COMMAND_TAG] !== undefined || typeof client.connection?.on !== 'function') return;
  client[LAST_COMMAND_TAG] = '';
  client.connection.on('commandComplete', (message) => {
    client[LAST_COMMAND_TAG] = message.text;
  });
}

/**
 * Whether PostgreSQL answered `queryRunner`'s last statement, its COMMIT when asked from an
 * after-commit hook, with ROLLBACK: the transaction was aborted, and nothing in it was stored (see
 * `watchCommitOutcome`, which must have been called before that COMMIT).
 */
export function committedAsRollback(queryRunner: QueryRunner): boolean {
  const client = (queryRunner as unknown as { databaseConnection?: PgClientConnection }).databaseConnection;
  return client?.[LAST_COMMAND_TAG] === 'ROLLBACK';
}

/** Set on a query runner whose last transaction's COMMIT PostgreSQL answered with ROLLBACK. */
const ROLLED_BACK_AT_COMMIT = Symbol('nestjs-integration-events:rolled-back-at-commit');

/**
 * Notes, on `queryRunner`, whether its COMMIT just now was answered with ROLLBACK (see
 * `committedAsRollback`), for code that learns of the commit only once its connection went back to the
 * pool, where the next statement's tag replaces it. Called from an after-commit hook.
 */
export function noteCommitOutcome(queryRunner: QueryRunner): void {
  // Written at every commit, so a query runner an application reuses carries no earlier transaction's answer.
  (queryRunner.data as Record<PropertyKey, unknown>)[ROLLED_BACK_AT_COMMIT] = committedAsRollback(queryRunner);
}

/** Whether `queryRunner`'s transaction was rolled back at its COMMIT (noted by `noteCommitOutcome`). */
export function wasRolledBackAtCommit(queryRunner: QueryRunner): boolean {
  return (queryRunner.data as Record<PropertyKey, unknown>)[ROLLED_BACK_AT_COMMIT] === true;
}

/**
 * Whether the cqrs bridge checks `queryRunner`'s transaction after its handlers (it has domain events
 * there, so the bridge's before-commit subscriber runs them, then checks). TypeORM runs the
 * before-commit subscribers side by side: a check that threw while handlers still ran would roll back
 * under them, and their later statements would run outside the transaction. So the outbox's own check
 * leaves such transactions to the bridge's, which comes after everything they do.
 */
export function isCheckedAfterDomainEvents(queryRunner: QueryRunner): boolean {
  return (queryRunner.data as Record<PropertyKey, unknown>)[DOMAIN_EVENT_QUEUE_KEY] !== undefined;
}

/** The parts of a better-sqlite3 `Database` used here. */
interface SqliteDatabaseState {
  readonly inTransaction: boolean;
  exec(sql: string): unknown;
}

/** Set on a query runner whose transaction SQLite rolled back and this module opened again, until its next one. */
const ROLLED_BACK_BY_SQLITE = Symbol('nestjs-integration-events:rolled-back-by-sqlite');

/**
 * On SQLite, a statement with a conflict clause such as `INSERT OR ROLLBACK`, a trigger's
 * `RAISE(ROLLBACK)` or a full disk rolls the whole transaction back (every savepoint in it too) while
 * TypeORM still counts it as open; TypeORM's own ROLLBACK, ROLLBACK TO SAVEPOINT or RELEASE of it then
 * fails, and its one query runner, shared by every transaction, keeps counting one (or a savepoint of
 * one) for good: every later transaction becomes a savepoint of one that is gone. When `queryRunner`'s
 * transaction is in that state, at whatever savepoint depth, this opens it again, with TypeORM's
 * savepoints below that depth (`typeorm_1` …), so that the statement TypeORM sends next for this level
 * goes through, and notes it: the transaction can no longer commit (`wasRolledBackBySqlite`).
 * @returns whether it was (the caller's work since then ran, and committed, on its own)
 */
export function reopenIfRolledBackBySqlite(queryRunner: QueryRunner): boolean {
  if (queryRunner.dataSource.options.type !== 'better-sqlite3' || !queryRunner.isTransactionActive) return false;
  const depth = (queryRunner as unknown as { transactionDepth?: unknown }).transactionDepth;
  if (typeof depth !== 'number' || depth < 1) return false;
  const database = (queryRunner.dataSource.driver as unknown as { databaseConnection?: SqliteDatabaseState }).databaseConnection;
  if (!database || database.inTransaction) return false;
  database.exec('BEGIN');
  for (let level = 1; level < depth; level++) database.exec(`SAVEPOINT typeorm_${level}`);
  (queryRunner.data as Record<PropertyKey, unknown>)[ROLLED_BACK_BY_SQLITE] = true;
  return true;
}

/** Whether SQLite rolled back `queryRunner`'s transaction (and `reopenIfRolledBackBySqlite` opened it again). */
export function wasRolledBackBySqlite(queryRunner: QueryRunner): boolean {
  return (queryRunner.data as Record<PropertyKey, unknown>)[ROLLED_BACK_BY_SQLITE] === true;
}

/** A new transaction begins on `queryRunner`: what SQLite did to an earlier one no longer applies. */
export function forgetRollbackBySqlite(queryRunner: QueryRunner): void {
  delete (queryRunner.data as Record<PropertyKey, unknown>)[ROLLED_BACK_BY_SQLITE];
}
