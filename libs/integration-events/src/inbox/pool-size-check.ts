import type { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import type { DiscoveredHandler } from '../discovery/discovered-handler';

/** node-postgres' pool size when `max` is not given. */
const PG_DEFAULT_POOL_MAX = 10;

/**
 * Warns at boot when the inbox handlers can hold every connection of the PostgreSQL pool: each call with
 * the inbox holds one for its transaction, up to its `concurrency` at once. The relay, HTTP requests, and
 * any second connection a handler asks for (a query outside its transaction) then wait for one, the last
 * until the handler's timeout.
 */
export function warnIfInboxCanFillThePool(dataSource: DataSource, handlers: readonly DiscoveredHandler[], logger: Logger): void {
  if (dataSource.options.type !== 'postgres') return;
  const inboxCalls = handlers.filter((handler) => handler.inbox).reduce((sum, handler) => sum + handler.concurrency, 0);
  if (inboxCalls === 0) return;
  const max = (dataSource.driver as unknown as { master?: { options?: { max?: unknown } } }).master?.options?.max;
  // pg-pool compares its size as given: a string from the environment ("50") counts as its number.
  const given = typeof max === 'number' || typeof max === 'string' ? Number(max) : Number.NaN;
  const poolSize = Number.isFinite(given) && given > 0 ? given : PG_DEFAULT_POOL_MAX;
  if (inboxCalls < poolSize) return;
  logger.warn(
    `Handlers with the inbox may hold ${inboxCalls} database connections at once (their concurrency), and the pool has ${poolSize}: ` +
      'the relay, HTTP requests and any second connection a handler needs would wait for one. Give the DataSource a larger pool ' +
      `(extra: { max: ${inboxCalls + 10} }, say), or a lower consumer.concurrency.`,
  );
}
