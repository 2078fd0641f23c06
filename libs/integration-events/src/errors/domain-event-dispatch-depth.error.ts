import { IntegrationEventsError } from './integration-events.error';

/**
 * Domain-event handlers kept raising new domain events for more rounds than `cqrs.maxDispatchDepth`
 * inside one transaction: almost always a cycle (A's handler raises B, B's raises A). The transaction
 * is rolled back.
 */
export class DomainEventDispatchDepthError extends IntegrationEventsError {
  constructor(
    readonly maxDepth: number,
    /** Names of the domain events still waiting when the limit was hit. */
    readonly pendingEvents: readonly string[],
  ) {
    super(
      `Domain events were still being raised after ${maxDepth} rounds of in-transaction dispatch ` +
        `(waiting: ${pendingEvents.slice(0, 10).join(', ')}${pendingEvents.length > 10 ? ', …' : ''}). This is ` +
        'usually a cycle between event handlers; break it, or raise cqrs.maxDispatchDepth if the chain is ' +
        'really that long. The transaction was rolled back.',
    );
  }
}
