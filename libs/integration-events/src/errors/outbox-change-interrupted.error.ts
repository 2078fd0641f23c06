import { IntegrationEventsError } from './integration-events.error';

/**
 * An outbox `retry` or `skip` of `{ all }` stopped part-way: a batch's statement failed. The rows in
 * `changed` were changed before it and stay changed; the rest of the `selected` rows are untouched, and
 * running it again takes them. `cause` is what stopped it.
 */
export class OutboxChangeInterruptedError extends IntegrationEventsError {
  constructor(
    /** Ids of the rows changed before the stop, in the table's order. */
    readonly changed: readonly string[],
    /** How many rows the selection held when it started. */
    readonly selected: number,
    cause: unknown,
  ) {
    super(
      `Stopped after ${changed.length} of ${selected} row(s), which stay changed (running it again takes the rest): ` +
        `${(cause as Error | undefined)?.message ?? String(cause)}`,
      { cause },
    );
  }
}
