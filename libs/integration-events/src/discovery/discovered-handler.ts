import type { IntegrationEventClass, IntegrationEventMetadata } from '../decorators/integration-event-metadata';
import type { IIntegrationEventHandler } from '../consumer/integration-event-handler.interface';
import type { RetryPolicy } from '../retry/retry-policy';

/** A handler found at boot, with everything needed to consume for it. */
export interface DiscoveredHandler {
  /** Class name of the handler, for logs and errors. */
  readonly name: string;
  readonly instance: IIntegrationEventHandler;
  readonly eventClass: IntegrationEventClass;
  readonly event: IntegrationEventMetadata;
  /** The handler's own queue. */
  readonly queue: string;
  /** Unacknowledged deliveries the broker hands this handler's consumer at once. */
  readonly prefetch: number;
  /** Calls running at once, at most `prefetch`; deliveries beyond it wait in the process. */
  readonly concurrency: number;
  /** The handler's dead-letter queue. */
  readonly deadLetterQueue: string;
  readonly retryPolicy: RetryPolicy;
  /** How long one call may take before it counts as a failed attempt. */
  readonly timeoutMs: number;
  /** Whether calls run in an inbox transaction (duplicates skipped). */
  readonly inbox: boolean;
  /**
   * Other versions of its event that the handlers paired with it (`replaces`) take, with their names.
   * Every queue bound to the event name gets every version: a message of one of these, routed here, is
   * theirs (it is acknowledged here, not dead-lettered as a version this handler does not know).
   */
  readonly otherVersions: ReadonlyMap<number, readonly string[]>;
}
