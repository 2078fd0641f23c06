import { IntegrationEventsError } from './integration-events.error';

/**
 * The outbox or inbox table the options point at exists but lacks columns the library writes: it is
 * another table (the inbox options naming the outbox table, an application's table of that name), or
 * one created by an older or hand-written migration. Fails application boot (the inbox, only where a
 * handler uses it); the cleanup reports it instead of deleting from that table.
 */
export class TableShapeMismatchError extends IntegrationEventsError {
  constructor(
    /** `outbox` or `inbox`: which of the library's tables was expected. */
    readonly kind: 'outbox' | 'inbox',
    /** The qualified table name that was looked at. */
    readonly table: string,
    /** The columns the library needs that the table does not have. */
    readonly missingColumns: readonly string[],
  ) {
    const migration = kind === 'outbox' ? 'createOutboxMigration' : 'createInboxMigration';
    super(
      `The table ${table} is not an ${kind} table: it has no column ${missingColumns.join(', ')}. Point the module's ` +
        `"${kind}" options (schema, table) at the table ${migration}({ schema, table }) created, or add that ` +
        "migration with this name to your DataSource's migrations and run it.",
    );
  }
}
