import { IntegrationEventsError } from '../errors/integration-events.error';

/** `drain()` did not get to an idle state in time; the message says what was still going on. */
export class DrainTimeoutError extends IntegrationEventsError {
  constructor(
    readonly timeoutMs: number,
    readonly remaining: string,
  ) {
    super(`drain() gave up after ${timeoutMs} ms with work left: ${remaining}. A handler may be hanging or retrying for longer than that.`);
  }
}
