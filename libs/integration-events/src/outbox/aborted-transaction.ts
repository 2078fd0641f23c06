import type { QueryRunner } from 'typeorm';
import { TransactionAbortedError } from '../errors/transaction-aborted.error';

/** The parts of a node-postgres client used here. */
interface PgClientState {
  /** The session's status from the server's last ReadyForQuery: idle, in a transaction, or in a failed one. */
  getTransactionStatus?(): 'I' | 'T' | 'E' | null;
  /** Whether that ReadyForQuery has come for everything sent so far (not part of node-postgres' typings). */
  readyForQuery?: unknown;
  query(text: string): Promise<unknown>;
}

/**
 * Throws `TransactionAbortedError` when `queryRunner`'s PostgreSQL transaction is aborted (a statement
 * in it failed and nothing rolled back to a savepoint since), which its `COMMIT` would silently turn
 * into a rollback. On SQLite, where a failed statement does not abort the transaction, it never throws.
 *
 * node-postgres keeps the status the server sent with its last ReadyForQuery, so this usually costs no
 * round trip. But a failed statement's error reaches its caller before its ReadyForQuery does: while
 * that message is still due, a `SELECT 1` queued behind it brings it (and fails on its own if the
 * transaction is aborted, which is ignored: the status says it).
 */
export async function assertTransactionNotAborted(queryRunner: QueryRunner, what: string): Promise<void> {
  const client = (queryRunner as unknown as { databaseConnection?: PgClientState }).databaseConnection;
  if (typeof client?.getTransactionStatus !== 'function') return;
  if (client.readyForQuery !== true) await client.query('SELECT 1').catch(() => undefined);
  if (client.getTransactionStatus() === 'E') throw new TransactionAbortedError(what);
}
