import { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';

/** The parts of a node-postgres client and pool used here. */
interface PgEventEmitter {
  on(event: string, listener: (...args: never[]) => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
  listenerCount(event: string): number;
}

/**
 * Keeps a PostgreSQL connection error from crashing the process while nobody holds the connection.
 *
 * node-postgres reports a dead connection (a restart, a failover, `pg_terminate_backend`) as an
 * `error` event on its client, and an `error` event without a listener is an uncaught exception. The
 * pool listens while a client is idle and stops when it hands one out; TypeORM starts listening only a
 * promise callback later. A new connection's first read can hold both its ReadyForQuery, which hands it
 * out, and the server's FATAL: the FATAL then lands in that gap and the whole service goes down
 * (seen in the chaos suite's PostgreSQL restarts).
 *
 * So each new client of the DataSource's pools gets one more listener. It does nothing when the pool
 * or TypeORM also listens (they handle the error as before); alone, it logs the error as a warning.
 * The client is unusable then: the query run on it fails with node-postgres' "not queryable" error,
 * and the pool drops it when it comes back.
 */
export class PostgresPoolGuard {
  private readonly logger = new Logger('IntegrationEvents:PostgreSQL');
  private readonly pools: PgEventEmitter[];
  private readonly onConnect = (client: PgEventEmitter): void => {
    const onError = (error: Error): void => {
      if (client.listenerCount('error') > 1) return;
      this.logger.warn(`A PostgreSQL connection failed while nobody listened for its errors (the pool had handed it out): ${error.message}`);
    };
    client.on('error', onError);
  };

  constructor(dataSource: DataSource) {
    const driver = dataSource.driver as unknown as { master?: PgEventEmitter; slaves?: PgEventEmitter[] };
    this.pools = [driver.master, ...(driver.slaves ?? [])].filter((pool): pool is PgEventEmitter => pool !== undefined);
    // The pool emits `connect` for each new client just before handing it out: the gap's start.
    for (const pool of this.pools) pool.on('connect', this.onConnect);
  }

  /** Stops guarding new clients (those already guarded keep their listener, which costs nothing). */
  release(): void {
    for (const pool of this.pools) pool.removeListener('connect', this.onConnect);
  }
}
