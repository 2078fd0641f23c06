import { IntegrationEventsError } from './integration-events.error';

/** A feature needs `@nestjs-cls/transactional`, which the application did not register. Fails boot. */
export class TransactionsNotConfiguredError extends IntegrationEventsError {
  constructor(feature: string) {
    super(
      `${feature} needs @nestjs-cls/transactional: register ClsModule.forRoot({ plugins: [new ClsPluginTransactional({ ` +
        'imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })] }), ' +
        'or set the module\'s "transactionConnectionName" to the plugin\'s connectionName.',
    );
  }
}
