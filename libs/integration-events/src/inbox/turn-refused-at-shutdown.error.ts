/**
 * A handler call that was still waiting to begin when the application began shutting down: for its inbox
 * transaction's turn (SQLite: one transaction at a time), or for an earlier attempt of its message, given
 * up on its timeout, to end (see `AbandonedCalls`). It never started. Not a failed attempt: the consumer
 * gives its message back to its queue, as a delivery not yet started, and counts nothing.
 */
export class TurnRefusedAtShutdownError extends Error {
  constructor(handlerKey: string, waitingFor = "its inbox transaction's turn (SQLite)") {
    super(`The call for ${handlerKey} was still waiting for ${waitingFor} when the application began shutting down; it never started`);
    this.name = 'TurnRefusedAtShutdownError';
  }
}
