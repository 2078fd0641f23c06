import { IntegrationEventsError } from './integration-events.error';

/** The outbox table the options point at does not exist. Fails application boot. */
export class OutboxTableMissingError extends IntegrationEventsError {
  constructor(
    /** The qualified table name that was looked for. */
    readonly table: string,
  ) {
    super(
      `The outbox table ${table} does not exist. Add createOutboxMigration({ schema, table }) (with the same ` +
        'schema and table as the module\'s "outbox" options) to your DataSource\'s migrations and run them ' +
        '(migrationsRun: true, or `typeorm migration:run`).',
    );
  }
}
