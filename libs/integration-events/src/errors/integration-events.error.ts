/**
 * Base class of every error this library throws on purpose.
 *
 * Catch this to tell the library's own refusals (bad options, bad events, no transaction, ...)
 * from anything else. Subclasses carry the offending values as fields and say how to fix them
 * in their message.
 */
export class IntegrationEventsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
