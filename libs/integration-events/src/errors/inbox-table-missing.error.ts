import { IntegrationEventsError } from './integration-events.error';

/** Handlers use the inbox, but its table does not exist. Fails application boot. */
export class InboxTableMissingError extends IntegrationEventsError {
  constructor(
    /** The qualified table name that was looked for. */
    readonly table: string,
  ) {
    super(
      `The inbox table ${table} does not exist. Add createInboxMigration({ schema, table }) (with the same schema ` +
        'and table as the module\'s "inbox" options) to your DataSource\'s migrations and run them, or turn the ' +
        'inbox off (inbox: { enabled: false }, or per handler with { inbox: false }) for handlers that touch no database.',
    );
  }
}
