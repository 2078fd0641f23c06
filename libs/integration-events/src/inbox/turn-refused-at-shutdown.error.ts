/**
 * A handler call whose inbox transaction was still waiting for its turn (SQLite: one transaction at a
 * time) when the application began shutting down: it never started. Not a failed attempt: the consumer
 * gives its message back to its queue, as a delivery not yet started, and counts nothing.
 */
export class TurnRefusedAtShutdownError extends Error {
  constructor(handlerKey: string) {
    super(`The call for ${handlerKey} was still waiting for its inbox transaction's turn (SQLite) when the application began shutting down; it never started`);
    this.name = 'TurnRefusedAtShutdownError';
  }
}
