/**
 * `value`, or `fallback` when the option was left out. Only `undefined` is "left out": `null` is a
 * value, refused where it does not fit rather than quietly replaced by the default.
 */
export function orDefault<T>(value: T | undefined, fallback: T): T {
  return value === undefined ? fallback : value;
}
