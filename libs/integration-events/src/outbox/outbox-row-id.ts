/**
 * A UUID as PostgreSQL reads one: 32 hex digits in either case, a hyphen allowed after any group of
 * four (so 8-4-4-4-12, none at all, or 4-4-4-…), the whole optionally in braces.
 */
const UUID_PATTERN = /^(?:\{(?:[0-9a-f]{4}-?){7}[0-9a-f]{4}\}|(?:[0-9a-f]{4}-?){7}[0-9a-f]{4})$/i;

/** Whether `id` can be an outbox row's id (a UUID, in a form PostgreSQL reads). */
export function isOutboxRowId(id: unknown): id is string {
  return typeof id === 'string' && UUID_PATTERN.test(id);
}
