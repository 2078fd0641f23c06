import { Injectable } from '@nestjs/common';
import { OutboxDatabase } from './outbox-database';
import { OutboxOperations, type OutboxFilter, type OutboxRowSummary, type OutboxSelection } from './outbox.operations';

/**
 * This service's outbox, for operators and admin endpoints: list rows (by default the stuck ones:
 * failed publishes and unroutable rows), send them again at once, or skip them. The same operations are
 * on the command line (`nestjs-integration-events outbox …`). PostgreSQL only, like the command line:
 * on a SQLite outbox every method throws an error saying so.
 */
@Injectable()
export class OutboxAdminService {
  constructor(private readonly database: OutboxDatabase) {}

  private get operations(): OutboxOperations {
    if (this.database.dialect !== 'postgres') {
      // Its statements are PostgreSQL's; on SQLite they would fail with a syntax error.
      throw new Error('OutboxAdminService works on a PostgreSQL outbox only; this service\'s outbox is on SQLite.');
    }
    return new OutboxOperations(this.database.dataSource, this.database.table);
  }

  async list(filter: OutboxFilter = 'stuck', limit = 100): Promise<OutboxRowSummary[]> {
    return this.operations.list(filter, limit);
  }

  async counts(): ReturnType<OutboxOperations['counts']> {
    return this.operations.counts();
  }

  /**
   * Makes the selected rows due now (unroutable and skipped rows become pending again); a row never
   * attempted keeps its own later time (`deliverAt`, `delay`).
   */
  async retry(selection: OutboxSelection): Promise<string[]> {
    return this.operations.retry(selection);
  }

  /** Marks the selected rows as never to be sent. */
  async skip(selection: OutboxSelection): Promise<string[]> {
    return this.operations.skip(selection);
  }
}
