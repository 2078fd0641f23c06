import type { DataSource, EntityManager } from 'typeorm';
import type { OutboxTableName } from '../outbox/outbox-table-name';
import { PostgresStatements } from '../outbox/postgres-statements';
import { SqliteConnection } from '../outbox/sqlite-connection';

/** Which messages each handler has already handled. */
export interface InboxStore {
  readonly table: OutboxTableName;
  /**
   * Records that `handler` handles `messageId`, in the caller's transaction. False when it was already
   * recorded (a duplicate delivery).
   */
  record(manager: EntityManager, handler: string, messageId: string): Promise<boolean>;
  /** Deletes up to `limit` rows older than `olderThanMs`; returns how many. */
  deleteOlderThan(olderThanMs: number, limit: number): Promise<number>;
}

/** PostgreSQL's SQLSTATE for a serialization failure. */
const SERIALIZATION_FAILURE = '40001';

/**
 * The inbox record of a REPEATABLE READ or SERIALIZABLE transaction met a concurrent attempt's record,
 * committed while it waited on it and outside its snapshot: PostgreSQL refuses to skip a row it cannot
 * see. The message was handled if that record is there now: `recordedNow()` says, asked once the failed
 * transaction has let go of its connection (asked inside it, each such attempt would hold one connection
 * while waiting for another).
 */
export class InboxRecordConflict extends Error {
  constructor(
    readonly serializationFailure: Error,
    readonly recordedNow: () => Promise<boolean>,
  ) {
    super(serializationFailure.message);
    this.name = serializationFailure.name;
  }
}

/**
 * The PostgreSQL inbox. A concurrent duplicate waits on the primary key until the first one's
 * transaction ends: it then sees the row (committed) or records its own (the first rolled back).
 */
export class PostgresInboxStore implements InboxStore {
  private readonly recordSql: string;
  private readonly deleteOldSql: string;

  constructor(
    private readonly dataSource: DataSource,
    readonly table: OutboxTableName,
    private readonly statements: PostgresStatements = new PostgresStatements(dataSource, true),
  ) {
    const t = table.qualified;
    this.recordSql = `INSERT INTO ${t} (handler, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1 AS recorded`;
    this.deleteOldSql =
      `DELETE FROM ${t} WHERE (handler, message_id) IN (SELECT handler, message_id FROM ${t} ` +
      "WHERE handled_at < now() - $1 * interval '1 millisecond' ORDER BY handled_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
  }

  async record(manager: EntityManager, handler: string, messageId: string): Promise<boolean> {
    try {
      const { rows } = await this.statements.onManager(manager, this.recordSql, [handler, messageId]);
      return rows.length === 1;
    } catch (error) {
      if ((error as { code?: unknown }).code !== SERIALIZATION_FAILURE) throw error;
      throw new InboxRecordConflict(error as Error, () => this.isRecorded(handler, messageId));
    }
  }

  async deleteOlderThan(olderThanMs: number, limit: number): Promise<number> {
    const result = (await this.dataSource.query(this.deleteOldSql, [olderThanMs, limit])) as [unknown[], number];
    return result[1];
  }

  private async isRecorded(handler: string, messageId: string): Promise<boolean> {
    const rows = (await this.dataSource.query(`SELECT 1 FROM ${this.table.qualified} WHERE handler = $1 AND message_id = $2`, [
      handler,
      messageId,
    ])) as unknown[];
    return rows.length > 0;
  }
}

/**
 * The SQLite inbox (one writer at a time: a duplicate simply finds the row). Times in epoch ms. The
 * cleanup runs between transactions (see `SqliteConnection`).
 */
export class SqliteInboxStore implements InboxStore {
  constructor(
    dataSource: DataSource,
    readonly table: OutboxTableName,
    private readonly connection: SqliteConnection = new SqliteConnection(dataSource),
  ) {}

  async record(manager: EntityManager, handler: string, messageId: string): Promise<boolean> {
    const rows = (await manager.query(
      `INSERT INTO ${this.table.qualified} (handler, message_id, handled_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1 AS recorded`,
      [handler, messageId, Date.now()],
    )) as unknown[];
    return rows.length === 1;
  }

  async deleteOlderThan(olderThanMs: number, limit: number): Promise<number> {
    const t = this.table.qualified;
    const { rows } = await this.connection.run(
      `DELETE FROM ${t} WHERE rowid IN (SELECT rowid FROM ${t} WHERE handled_at < ? ORDER BY handled_at LIMIT ?) RETURNING 1`,
      () => [Date.now() - olderThanMs, limit],
    );
    return rows.length;
  }
}
