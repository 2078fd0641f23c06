/**
 * Object keys an integration event may not carry, refused at publish and poison at consume, with why:
 * - `__proto__`, `constructor` and `prototype` could reach an object's prototype when the body is rebuilt;
 * - the names of `Object.prototype`'s methods (`valueOf`, `toString`, `hasOwnProperty` …) would not come
 *   back: class-transformer skips a key whose target object already holds a function by that name, and
 *   every object it builds does, so the handler would get the event without them.
 */
const REFUSED_KEYS: ReadonlyMap<string, string> = new Map([
  ...['__proto__', 'constructor', 'prototype'].map((key): [string, string] => [key, 'refused to prevent prototype pollution']),
  ...[
    'toString',
    'toLocaleString',
    'valueOf',
    'hasOwnProperty',
    'isPrototypeOf',
    'propertyIsEnumerable',
    '__defineGetter__',
    '__defineSetter__',
    '__lookupGetter__',
    '__lookupSetter__',
  ].map((key): [string, string] => [key, 'a method name of every object: class-transformer would leave it out of the rebuilt event']),
]);

/** Why `key` is refused in an integration event's body, or `undefined` when it is not. */
export function refusedKeyReason(key: string): string | undefined {
  return REFUSED_KEYS.get(key);
}
