import { IntegrationEventsError } from './integration-events.error';

/**
 * A dead-letter requeue stopped part-way (a target queue missing, the broker blocking publishing, a copy
 * not confirmed). The dead letters in `requeued` went back to their queues and left the dead-letter
 * queue; the rest are still there. `cause` is what stopped it.
 */
export class RequeueInterruptedError extends IntegrationEventsError {
  constructor(
    /** Message ids requeued before the stop (`''` for one without an id). */
    readonly requeued: readonly string[],
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      `${reason}. ${
        requeued.length === 0
          ? 'Nothing was requeued.'
          : `Requeued before that, and gone from the dead-letter queue: ${requeued.length} (${requeued.map((id) => id || '(no id)').join(', ')}).`
      }`,
      { cause },
    );
  }
}
