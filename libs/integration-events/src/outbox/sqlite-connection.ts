import { type DataSource, QueryFailedError } from 'typeorm';

/** The parts of a better-sqlite3 `Database` used here. */
interface SqliteDatabase {
  readonly inTransaction: boolean;
  prepare(sql: string): SqliteStatement;
  /** better-sqlite3's wrapper: the returned function runs `fn` between BEGIN and COMMIT (ROLLBACK if it throws). */
  transaction(fn: () => void): () => void;
}

interface SqliteStatement {
  /** True when the statement returns rows (a SELECT, or a write with `RETURNING`). */
  readonly reader: boolean;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number };
}

/** The longest pause between two looks at a transaction that is still open. */
const MAX_WAIT_MS = 20;

/**
 * The one connection of a TypeORM `better-sqlite3` DataSource, used so that the library's work stays
 * out of other transactions. TypeORM runs every transaction of such a DataSource on that connection, so
 * a statement sent while any transaction is open runs inside it: a claim would see rows not yet
 * committed (and publish events that are then rolled back), and that transaction's rollback would undo
 * a mark (and the row would be sent again). Likewise two transactions open at once nest, the second as
 * a savepoint of the first, and the first one's rollback takes the second's committed work with it.
 *
 * So the relay's and the cleanup's statements run **between transactions** (each waits until none is
 * open, then runs at once: better-sqlite3 executes synchronously, so no transaction can begin in
 * between), and the library's own transactions (the inbox's) run **one at a time**, each once no other
 * transaction is open.
 */
export class SqliteConnection {
  private turn: Promise<unknown> = Promise.resolve();
  /**
   * Statements waiting for a moment between transactions, in the order they came (a batch's mark runs
   * before the relay's next claim, which could otherwise take the rows again once their lease ran out
   * behind a long transaction); the library's next transaction lets them go first.
   */
  private readonly waiting: Array<(database: SqliteDatabase | Error) => void> = [];
  private polling = false;
  private readonly statements = new WeakMap<SqliteDatabase, Map<string, SqliteStatement>>();

  constructor(private readonly dataSource: DataSource) {}

  /**
   * Whether SQLite has a transaction open on the connection. A transaction TypeORM still counts as active
   * may be gone: a conflict clause (`INSERT OR ROLLBACK`), a trigger's `RAISE(ROLLBACK)` or a full disk
   * rolls the whole of it back, and the statements sent after that run on their own, committed at once.
   */
  get inTransaction(): boolean {
    return this.database().inTransaction;
  }

  /**
   * Runs one statement outside any transaction, once none is open; its rows (if it returns any) and
   * changes. `params` given as a function are made when the statement runs: a time among them (a lease's
   * end, a cutoff) is read then, not before a wait for an application's transaction that may outlast it.
   */
  run<Row>(sql: string, params: readonly unknown[] | (() => readonly unknown[]) = []): Promise<{ rows: Row[]; changes: number }> {
    return this.betweenTransactions((database) => this.execute<Row>(database, sql, typeof params === 'function' ? params() : params));
  }

  /** Runs `statements` in one transaction of their own (all or none), once no other is open. */
  runAtomically(statements: ReadonlyArray<{ readonly sql: string; readonly params: readonly unknown[] }>): Promise<void> {
    return this.betweenTransactions((database) => {
      database.transaction(() => {
        for (const { sql, params } of statements) this.execute(database, sql, params);
      })();
    });
  }

  /**
   * Calls `work` once no transaction is open, in the same synchronous step as the look (nothing can begin
   * one between them), after the statements that were waiting before it.
   */
  private async betweenTransactions<T>(work: (database: SqliteDatabase) => T): Promise<T> {
    const database = this.database();
    if (!database.inTransaction && this.waiting.length === 0) return work(database);
    return new Promise<T>((resolve, reject) => {
      this.waiting.push((current) => {
        if (current instanceof Error) return reject(current);
        try {
          resolve(work(current));
        } catch (error) {
          reject(error as Error);
        }
      });
      void this.letWaitingThrough();
    });
  }

  /** Looks, more and more slowly, for a moment with no transaction open, and runs every waiting statement in it. */
  private async letWaitingThrough(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (let waitMs = 1; this.waiting.length > 0; waitMs = Math.min(MAX_WAIT_MS, waitMs * 2)) {
        await pause(waitMs);
        let current: SqliteDatabase | Error;
        try {
          current = this.database();
        } catch (error) {
          current = error as Error;
        }
        if (!(current instanceof Error) && current.inTransaction) continue;
        // Synchronous statements, one after the other: no transaction can begin among them.
        for (const next of this.waiting.splice(0)) next(current);
        waitMs = 0.5;
      }
    } finally {
      this.polling = false;
    }
  }

  /**
   * Runs `work` (which opens a transaction) after the library's earlier ones have ended, once no
   * transaction is open and no statement is waiting for that moment (back-to-back transactions would
   * leave it none: the relay would wait for as long as handlers keep coming). An application
   * transaction that begins in the moment before `work` opens its own still nests with it: keep the
   * application's own transactions from overlapping on SQLite.
   * @param signal gives the turn up while it is still waited for: the result rejects with its reason,
   *   `work` never starts, and the turns after it go on (once `work` has started, it decides)
   */
  exclusive<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let gaveUp = signal?.aborted === true;
    let started = false;
    const turn = this.turn.then(async () => {
      for (let waitMs = 1; !gaveUp && (this.database().inTransaction || this.waiting.length > 0); waitMs = Math.min(MAX_WAIT_MS, waitMs * 2)) {
        await pause(waitMs);
      }
      if (gaveUp) return undefined as T;
      started = true;
      return work();
    });
    this.turn = turn.catch(() => undefined);
    if (!signal) return turn;
    if (gaveUp) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        if (started) return;
        gaveUp = true;
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      turn.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          if (!gaveUp) resolve(value);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          if (!gaveUp) reject(error);
        },
      );
    });
  }

  private execute<Row>(database: SqliteDatabase, sql: string, params: readonly unknown[]): { rows: Row[]; changes: number } {
    this.dataSource.logger.logQuery(sql, [...params]);
    try {
      const statement = this.statement(database, sql);
      if (statement.reader) return { rows: statement.all(...params) as Row[], changes: 0 };
      return { rows: [], changes: statement.run(...params).changes };
    } catch (error) {
      this.dataSource.logger.logQueryError(error as Error, sql, [...params]);
      throw new QueryFailedError(sql, [...params], error as Error);
    }
  }

  private database(): SqliteDatabase {
    const database = (this.dataSource.driver as unknown as { databaseConnection?: SqliteDatabase }).databaseConnection;
    if (!database) throw new Error('The SQLite DataSource is not connected');
    return database;
  }

  /** A prepared statement per SQL text, the least recently used dropped past `MAX_CACHED_STATEMENTS`. */
  private statement(database: SqliteDatabase, sql: string): SqliteStatement {
    let cache = this.statements.get(database);
    if (!cache) this.statements.set(database, (cache = new Map()));
    let statement = cache.get(sql);
    if (statement) {
      cache.delete(sql);
    } else {
      statement = database.prepare(sql);
      if (cache.size >= MAX_CACHED_STATEMENTS) cache.delete(cache.keys().next().value!);
    }
    cache.set(sql, statement);
    return statement;
  }
}

/**
 * Statements kept prepared per database. The relay's and the cleanup's are a handful; a standalone
 * publish's multi-row INSERT has one text per row count, and those must not pile up for ever.
 */
const MAX_CACHED_STATEMENTS = 100;

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
