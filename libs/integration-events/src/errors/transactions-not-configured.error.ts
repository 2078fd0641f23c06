import { IntegrationEventsError } from './integration-events.error';

/**
 * A feature needs `@nestjs-cls/transactional` on the library's DataSource: the application did not
 * register it, or its TransactionHost works on another DataSource. Fails boot.
 */
export class TransactionsNotConfiguredError extends IntegrationEventsError {
  /** @param dataSourceName set when a TransactionHost exists, but on another DataSource than this one */
  constructor(feature: string, dataSourceName?: string) {
    super(
      dataSourceName === undefined
        ? `${feature} needs @nestjs-cls/transactional: register ClsModule.forRoot({ plugins: [new ClsPluginTransactional({ ` +
            'imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })] }), ' +
            'or set the module\'s "transactionConnectionName" to the plugin\'s connectionName.'
        : `${feature} needs @nestjs-cls/transactional on the DataSource the library uses ("${dataSourceName}"), but the ` +
            'TransactionHost it found runs its transactions elsewhere (another DataSource, or not TypeORM): give that ' +
            `plugin's TransactionalAdapterTypeOrm the dataSourceToken getDataSourceToken('${dataSourceName}'), or register ` +
            'a plugin that does (with a connectionName) and set the module\'s "transactionConnectionName" to it.',
    );
  }
}
