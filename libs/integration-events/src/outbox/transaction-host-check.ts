import type { Logger } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { TransactionsNotConfiguredError } from '../errors/transactions-not-configured.error';
import type { IntegrationEventsConfig } from '../options/integration-events.config';
import type { EntityManagerResolver } from './entity-manager.resolver';
import type { OutboxDatabase } from './outbox-database';

/**
 * Checks at boot the nestjs-cls transactions `publish()` joins. A `transactionConnectionName` that names
 * no plugin (a typo), or one whose transactions run on another DataSource, fails boot: otherwise every
 * `publish()` in `@Transactional('<name>')` would fail at run time, as if called outside a transaction.
 * With no name given, a default plugin on another DataSource is only warned about: publishing with an
 * explicit EntityManager, or standalone, still works.
 */
export function assertTransactionHostFits(
  managers: EntityManagerResolver,
  database: OutboxDatabase,
  config: IntegrationEventsConfig,
  logger: Logger,
): void {
  const { transactionConnectionName, dataSourceName } = config.options;
  const host = managers.host();
  const feature = `"transactionConnectionName" ("${String(transactionConnectionName)}")`;
  if (!host) {
    if (transactionConnectionName !== undefined) throw new TransactionsNotConfiguredError(feature);
    return;
  }
  // Outside a transaction the host gives its adapter's fallback: the DataSource's own manager.
  const hostDataSource = (host.tx as Partial<EntityManager> | undefined)?.dataSource;
  if (hostDataSource === database.dataSource) return;
  if (transactionConnectionName !== undefined) throw new TransactionsNotConfiguredError(feature, dataSourceName);
  logger.warn(
    `The nestjs-cls transactions found run on another DataSource than the outbox's${dataSourceName ? ` ("${dataSourceName}")` : ''}: ` +
      'publish() inside them is refused' +
      (config.options.cqrs.enabled
        ? ', and, with CqrsModule imported, so is a domain event raised on the EventBus inside them (TransactionsNotConfiguredError; cqrs.enabled: false turns the bridge off)'
        : '') +
      '. Set "transactionConnectionName" to the connectionName of a ClsPluginTransactional on ' +
      "the outbox's DataSource, or publish with an explicit EntityManager.",
  );
}
