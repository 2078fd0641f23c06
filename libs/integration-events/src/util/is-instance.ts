/**
 * `value instanceof type`, for values a handler or a hook threw: `false` instead of a `TypeError` when
 * the check itself throws (a revoked `Proxy`, whose prototype cannot be read).
 */
export function isInstance<T>(value: unknown, type: abstract new (...args: never[]) => T): value is T {
  try {
    return value instanceof type;
  } catch {
    return false;
  }
}
