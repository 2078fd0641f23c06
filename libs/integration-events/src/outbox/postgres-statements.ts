import { createHash } from 'node:crypto';
import { type DataSource, type EntityManager, QueryFailedError, type QueryRunner, QueryRunnerAlreadyReleasedError } from 'typeorm';
import { OutboxCommitSubscriber } from './outbox-commit.subscriber';

/** What a statement returned: its rows and how many rows it touched. */
export interface StatementResult<Row> {
  readonly rows: Row[];
  readonly rowCount: number;
}

/** The parts of node-postgres used here (a pooled client, or the pool itself). */
interface PgQueryable {
  query(config: { name?: string; text: string; values: readonly unknown[] }): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

/**
 * Runs the library's frequent SQL (the outbox insert, the claim, the marks, the inbox record) as
 * **named prepared statements** on PostgreSQL: each connection parses and plans a statement once, then
 * only binds and executes it — for the outbox insert, about 40 % less PostgreSQL CPU than the same
 * statement sent unnamed (see bench/README.md). The name is derived from the text, so two tables never
 * share one. With `outbox.preparedStatements: false` (behind PgBouncer older than 1.21 in transaction
 * mode, which cannot keep them) the same SQL is sent unnamed.
 *
 * Statements go to node-postgres directly, on the query runner's own connection (so inside its
 * transaction), or on the DataSource's pool (through TypeORM when unnamed); they are logged through the
 * DataSource's logger like TypeORM's own, and errors come out as TypeORM's `QueryFailedError`. TypeORM's
 * subscribers do not see them (`beforeQuery`/`afterQuery`), nor does its slow-query log.
 */
export class PostgresStatements {
  private readonly names = new Map<string, string>();
  /** Names given afresh so far (`renew()`): each renewed name is new to every connection. */
  private generation = 0;

  constructor(
    private readonly dataSource: DataSource,
    private readonly prepared: boolean,
  ) {}

  /**
   * Runs `sql` on `manager`'s connection (in its transaction), or on the pool when it has none.
   * @throws NoActiveTransactionError when that transaction's COMMIT or ROLLBACK has been sent (see
   *   `OutboxCommitSubscriber.assertNotEnding`): checked in the same step as the statement is queued on the
   *   connection, so that it never runs after them, on its own
   */
  async onManager<Row>(manager: EntityManager, sql: string, params: readonly unknown[]): Promise<StatementResult<Row>> {
    const queryRunner = manager.queryRunner;
    if (!queryRunner) return this.onPool(sql, params);
    // TypeORM releases a query runner whose connection failed but keeps its client, which the pool may
    // already have ended or handed to someone else: never send anything on it (as TypeORM's own query()).
    if (queryRunner.isReleased) throw new QueryRunnerAlreadyReleasedError();
    const client = (await queryRunner.connect()) as PgQueryable;
    // Unnamed too (preparedStatements: false), straight to the connection: through TypeORM's query(),
    // which awaits before it sends, a COMMIT asked for meanwhile could go first.
    if (queryRunner.isTransactionActive) OutboxCommitSubscriber.assertNotEnding(queryRunner);
    return this.run(client, sql, params, queryRunner);
  }

  /** Runs `sql` on a connection of the DataSource's pool, on its own (autocommit). */
  async onPool<Row>(sql: string, params: readonly unknown[]): Promise<StatementResult<Row>> {
    const pool = (this.dataSource.driver as unknown as { master?: PgQueryable }).master;
    if (!this.prepared || !pool) {
      const queryRunner = this.dataSource.createQueryRunner();
      try {
        return fromTypeOrm(await queryRunner.query(sql, [...params], true));
      } finally {
        await queryRunner.release();
      }
    }
    return this.run(pool, sql, params, undefined);
  }

  private async run<Row>(target: PgQueryable, sql: string, params: readonly unknown[], queryRunner: QueryRunner | undefined): Promise<StatementResult<Row>> {
    this.dataSource.logger.logQuery(sql, [...params], queryRunner);
    const execute = async (): Promise<StatementResult<Row>> => {
      const result = await target.query(this.prepared ? { name: this.nameOf(sql), text: sql, values: params } : { text: sql, values: params });
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
    };
    let failure: unknown;
    try {
      return await execute();
    } catch (error) {
      failure = error;
    }
    if (this.prepared && isStalePreparedStatement(failure)) {
      // node-postgres would only ever bind the statement it prepared on that connection again: under a
      // new name, every connection prepares it afresh. Run again at once outside a transaction; in one,
      // the failure aborted it, and the caller's retry gets the new name.
      this.renew(sql);
      if (!queryRunner?.isTransactionActive) {
        try {
          return await execute();
        } catch (error) {
          failure = error;
        }
      }
    }
    this.dataSource.logger.logQueryError(failure as Error, sql, [...params], queryRunner);
    throw new QueryFailedError(sql, [...params], failure as Error);
  }

  private nameOf(sql: string): string {
    let name = this.names.get(sql);
    if (!name) {
      name = `${STATEMENT_NAME_PREFIX}${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`;
      this.names.set(sql, name);
    }
    return name;
  }

  /** Gives `sql` a name no connection has prepared yet. */
  private renew(sql: string): void {
    const base = this.nameOf(sql).replace(/_\d+$/, '');
    this.generation++;
    this.names.set(sql, `${base}_${this.generation}`);
  }
}

/** Every statement this library prepares is named so: `nestjs_ie_` and 20 hex digits (then `_N` once renewed). */
const STATEMENT_NAME_PREFIX = 'nestjs_ie_';

/**
 * Whether PostgreSQL refused to run a named statement a connection had prepared: a column it returns
 * changed type since (a migration: "cached plan must not change result type", 0A000), or the server no
 * longer has it (`DISCARD ALL`, `DEALLOCATE`, a pooler's reset: 26000).
 */
function isStalePreparedStatement(error: unknown): boolean {
  const { code, routine, message } = (error ?? {}) as { code?: unknown; routine?: unknown; message?: unknown };
  if (code === '26000') return true;
  // By the server's routine, which lc_messages does not translate (the message is its English text).
  return code === '0A000' && (routine === 'RevalidateCachedQuery' || (typeof message === 'string' && message.includes('cached plan must not change result type')));
}

function fromTypeOrm<Row>(result: { records?: unknown[]; affected?: number | null }): StatementResult<Row> {
  return { rows: (result.records ?? []) as Row[], rowCount: result.affected ?? 0 };
}
