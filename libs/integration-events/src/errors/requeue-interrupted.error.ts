import { IntegrationEventsError } from './integration-events.error';

/**
 * A dead-letter requeue stopped part-way (a target queue missing, the broker blocking publishing, a copy
 * not confirmed). The dead letters in `requeued` went back to their queues and left the dead-letter
 * queue, except `inBothQueues` when set (its copy was placed, and it is in the dead-letter queue too);
 * the rest are still there. `cause` is what stopped it.
 */
export class RequeueInterruptedError extends IntegrationEventsError {
  constructor(
    /** Message ids requeued before the stop (`''` for one without an id). */
    readonly requeued: readonly string[],
    cause: unknown,
    /**
     * The last of `requeued` when its copy was placed but its dead letter went back to the dead-letter
     * queue too (its reading channel closed meanwhile): `cause` says so, and the summary leaves it out
     * of those gone from the dead-letter queue.
     */
    readonly inBothQueues?: string,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    const gone = inBothQueues === undefined ? requeued : requeued.slice(0, -1);
    super(
      `${reason}. ${
        gone.length === 0
          ? inBothQueues === undefined
            ? 'Nothing was requeued.'
            : 'Nothing was requeued before it.'
          : `Requeued before that, and gone from the dead-letter queue: ${gone.length} (${gone.map((id) => id || '(no id)').join(', ')}).`
      }`,
      { cause },
    );
  }
}
