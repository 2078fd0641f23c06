import { OutboxCommitSubscriber } from './outbox-commit.subscriber';
import type { DataSource, EntityManager } from 'typeorm';
import type { ClaimedOutboxRecord, FailedOutboxRecord, NewOutboxRecord } from './outbox-record';
import type { OutboxLease } from '../relay/relay-handoff';
import type { OutboxStore } from './outbox.store';
import type { OutboxTableName } from './outbox-table-name';
import { SqliteConnection } from './sqlite-connection';
import { TransactionAbortedError } from '../errors/transaction-aborted.error';
import { wasRolledBackBySqlite } from './aborted-transaction';

/** Rows per INSERT: 10 parameters each, within SQLite's 32,766 a statement. */
const MAX_ROWS_PER_INSERT = 3_000;
/** Around the statements of one large insert in the caller's transaction (TypeORM's own are `typeorm_<n>`). */
const INSERT_SAVEPOINT = 'nestjs_ie_outbox_insert';

interface ClaimedRow {
  id: string;
  event_name: string;
  event_version: number;
  payload: string;
  headers: string;
  occurred_at: string;
  attempts: number;
  seq: number;
}

/**
 * The SQLite outbox (TypeORM's `better-sqlite3` driver), for running without PostgreSQL. SQLite has one
 * writer at a time and no `SKIP LOCKED`: claims are exclusive because each claim is a single
 * `UPDATE … RETURNING` statement, and the lease and its token work exactly as on PostgreSQL. That makes
 * it correct for several relays in one process; for several processes on one database file, use
 * PostgreSQL. Times are stored as epoch milliseconds and computed in the process. Everything but the
 * insert in the caller's transaction runs between transactions (see `SqliteConnection`).
 */
export class SqliteOutboxStore implements OutboxStore {
  private readonly t: string;

  constructor(
    dataSource: DataSource,
    table: OutboxTableName,
    private readonly connection: SqliteConnection = new SqliteConnection(dataSource),
  ) {
    this.t = table.qualified;
  }

  async insert(manager: EntityManager, records: readonly NewOutboxRecord[], lease?: OutboxLease): Promise<void> {
    const now = Date.now();
    const lockedUntil = lease ? now + lease.leaseMs : null;
    const leaseToken = lease?.token ?? null;
    // SQLite takes at most 32,766 parameters a statement: a large publish() goes in several.
    const statements: Array<{ sql: string; params: unknown[] }> = [];
    for (let start = 0; start < records.length; start += MAX_ROWS_PER_INSERT) {
      const chunk = records.slice(start, start + MAX_ROWS_PER_INSERT);
      const params: unknown[] = [];
      for (const r of chunk) {
        const availableAt = r.availableAt ? r.availableAt.getTime() : now;
        params.push(r.id, r.eventName, r.eventVersion, r.payload, JSON.stringify(r.headers), r.occurredAt.toISOString(), availableAt, now, lockedUntil, leaseToken);
      }
      const sql =
        `INSERT INTO ${this.t} (id, event_name, event_version, payload, headers, occurred_at, available_at, created_at, locked_until, lease_token) VALUES ` +
        chunk.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ');
      statements.push({ sql, params });
    }
    // In the caller's transaction; a standalone publish waits for a moment outside every transaction,
    // and its statements then commit together.
    if (manager.queryRunner?.isTransactionActive) {
      // SQLite rolled the caller's transaction back itself: the rows would commit on their own, and the
      // relay would send the events of a transaction that failed. (The rollback that follows goes through:
      // see OutboxCommitSubscriber.beforeTransactionRollback.)
      if (!this.connection.inTransaction || wasRolledBackBySqlite(manager.queryRunner)) {
        throw new TransactionAbortedError('The transaction that published integration events', 'SQLite');
      }
      // Its COMMIT or ROLLBACK already asked for (code the transaction did not await). TypeORM's SQLite
      // runner awaits before it runs a statement, a little longer for one it has not prepared yet: a
      // COMMIT asked for a moment after this check can still run first (on PostgreSQL the check and the
      // statement's queueing are one step; see PostgresStatements.onManager).
      OutboxCommitSubscriber.assertNotEnding(manager.queryRunner);
      if (statements.length === 1) {
        await manager.query(statements[0]!.sql, statements[0]!.params);
        return;
      }
      // A failed statement does not undo the earlier ones in a SQLite transaction: a caller that catches
      // the error and commits would keep part of a publish() that threw. A savepoint makes it all or none.
      await manager.query(`SAVEPOINT ${INSERT_SAVEPOINT}`);
      try {
        for (const { sql, params } of statements) {
          // Each is awaited: its transaction may have begun to end meanwhile. A ROLLBACK then takes the
          // statements run so far with it, and the rest are refused; a COMMIT commits them (SQLite commits
          // an open savepoint with its transaction) while this publish() fails: the rows it wrote go out
          // through a claim once their lease has passed.
          OutboxCommitSubscriber.assertNotEnding(manager.queryRunner);
          await manager.query(sql, params);
        }
      } catch (error) {
        // Undone, unless the failure made SQLite roll the whole transaction back (a full disk, a trigger's
        // RAISE(ROLLBACK)): the savepoint went with it, and the statement's own error is the one that says why.
        // (OutboxCommitSubscriber takes this ROLLBACK for an application's: the transaction's rows leased
        // so far go out through a claim instead of the handoff, which costs time only.)
        if (this.connection.inTransaction) {
          await manager.query(`ROLLBACK TO ${INSERT_SAVEPOINT}`);
          await manager.query(`RELEASE ${INSERT_SAVEPOINT}`);
        }
        throw error;
      }
      await manager.query(`RELEASE ${INSERT_SAVEPOINT}`);
    } else if (statements.length === 1) {
      await this.connection.run(statements[0]!.sql, statements[0]!.params);
    } else {
      await this.connection.runAtomically(statements);
    }
  }

  async claim(limit: number, leaseMs: number, leaseToken: string): Promise<ClaimedOutboxRecord[]> {
    const { rows } = await this.connection.run<ClaimedRow>(
      `UPDATE ${this.t} SET locked_until = ?, lease_token = ? WHERE id IN (` +
        `SELECT id FROM ${this.t} WHERE status = 'pending' AND available_at <= ? AND (locked_until IS NULL OR locked_until <= ?) ` +
        'ORDER BY available_at, seq LIMIT ?) ' +
        'RETURNING id, event_name, event_version, payload, headers, occurred_at, attempts, seq',
      // The time when it runs: a lease dated from before the wait could end before it starts.
      () => {
        const now = Date.now();
        return [now + leaseMs, leaseToken, now, now, limit];
      },
    );
    return rows
      .sort((a, b) => a.seq - b.seq)
      .map((row) => ({
        id: row.id,
        eventName: row.event_name,
        eventVersion: row.event_version,
        payload: row.payload,
        headers: JSON.parse(row.headers) as ClaimedOutboxRecord['headers'],
        occurredAt: new Date(row.occurred_at),
        attempts: row.attempts,
      }));
  }

  async markSent(ids: readonly string[], leaseToken: string): Promise<void> {
    if (ids.length === 0) return;
    await this.connection.run(
      `UPDATE ${this.t} SET status = 'sent', sent_at = ?, locked_until = NULL, lease_token = NULL, last_error = NULL ` +
        `WHERE id IN ${ID_LIST} AND status = 'pending' AND lease_token = ?`,
      () => [Date.now(), JSON.stringify(ids), leaseToken],
    );
  }

  async markFailed(records: readonly FailedOutboxRecord[], leaseToken: string): Promise<void> {
    for (const record of records) {
      await this.connection.run(
        `UPDATE ${this.t} SET attempts = attempts + 1, last_error = ?, locked_until = NULL, lease_token = NULL, available_at = ? ` +
          "WHERE id = ? AND status = 'pending' AND lease_token = ?",
        () => [record.error.slice(0, 2_000), Date.now() + Math.max(0, Math.round(record.retryInMs)), record.id, leaseToken],
      );
    }
  }

  async release(ids: readonly string[], leaseToken: string): Promise<void> {
    if (ids.length === 0) return;
    await this.connection.run(
      `UPDATE ${this.t} SET locked_until = NULL, lease_token = NULL WHERE id IN ${ID_LIST} AND status = 'pending' AND lease_token = ?`,
      [JSON.stringify(ids), leaseToken],
    );
  }

  async markUnroutable(ids: readonly string[], reason: string, leaseToken: string): Promise<void> {
    if (ids.length === 0) return;
    await this.connection.run(
      `UPDATE ${this.t} SET status = 'unroutable', locked_until = NULL, lease_token = NULL, last_error = ? ` +
        `WHERE id IN ${ID_LIST} AND status = 'pending' AND lease_token = ?`,
      [reason.slice(0, 2_000), JSON.stringify(ids), leaseToken],
    );
  }

  async failing(minAttempts: number): Promise<{ rows: number; lastError: string | null }> {
    const failingRows = `FROM ${this.t} WHERE status = 'pending' AND attempts >= ?`;
    const {
      rows: [row],
    } = await this.connection.run<{ rows: number; last_error: string | null }>(
      `SELECT count(*) AS rows, (SELECT last_error ${failingRows} ORDER BY attempts DESC, seq LIMIT 1) AS last_error ${failingRows}`,
      [minAttempts, minAttempts],
    );
    return { rows: row?.rows ?? 0, lastError: row?.last_error ?? null };
  }

  async backlog(): Promise<{ pending: number; oldestDueAt: Date | null; lagMs: number }> {
    // Times here are the process's own (it writes them): its clock is the database's.
    let now = 0;
    const {
      rows: [row],
    } = await this.connection.run<{ pending: number; oldest: number | null }>(
      `SELECT count(*) AS pending, min(available_at) AS oldest FROM ${this.t} WHERE status = 'pending' AND available_at <= ?`,
      () => [(now = Date.now())],
    );
    const oldest = row?.oldest ?? null;
    return { pending: row?.pending ?? 0, oldestDueAt: oldest === null ? null : new Date(oldest), lagMs: oldest === null ? 0 : Math.max(0, now - oldest) };
  }

  async deleteSent(olderThanMs: number, limit: number): Promise<number> {
    const { rows } = await this.connection.run(
      `DELETE FROM ${this.t} WHERE id IN (SELECT id FROM ${this.t} WHERE status = 'sent' AND sent_at < ? ORDER BY sent_at LIMIT ?) RETURNING id`,
      () => [Date.now() - olderThanMs, limit],
    );
    return rows.length;
  }
}

/**
 * A list of ids as one parameter (a JSON array): one statement for any number of ids, so it is prepared
 * once, and never past SQLite's 32,766 parameters (a shutdown releases up to ten batches' worth).
 */
const ID_LIST = '(SELECT value FROM json_each(?))';
