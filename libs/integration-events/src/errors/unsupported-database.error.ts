import { IntegrationEventsError } from './integration-events.error';

/** The DataSource is of a type the outbox does not support. Fails application boot. */
export class UnsupportedDatabaseError extends IntegrationEventsError {
  constructor(
    /** TypeORM's `type` of the DataSource. */
    readonly databaseType: string,
  ) {
    super(
      `The outbox supports PostgreSQL and SQLite (better-sqlite3) DataSources; this one is "${databaseType}". ` +
        'Point the module\'s "dataSourceName" option at one of those.',
    );
  }
}
