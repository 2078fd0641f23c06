import { plainToInstance } from 'class-transformer';
import { IntegrationEventSerializationError } from '../errors/integration-event-serialization.error';
import { refusedKeyReason } from './refused-keys';

/** Built-ins that JSON.stringify turns into `{}` (or worse) without a word. */
const LOSSY_BUILT_INS: ReadonlyArray<[abstract new (...args: never[]) => object, string]> = [
  [Map, 'a Map (JSON turns it into {}); use an object or an array of entries'],
  [Set, 'a Set (JSON turns it into {}); use an array'],
  [WeakMap, 'a WeakMap, which has no JSON form'],
  [WeakSet, 'a WeakSet, which has no JSON form'],
  [RegExp, 'a RegExp (JSON turns it into {}); send its source as a string'],
  [Error, 'an Error (JSON turns it into {}); send its message as a string'],
  [Promise, 'a Promise; await it before publishing'],
  [ArrayBuffer, 'an ArrayBuffer; encode binary data as a base64 string'],
  [DataView, 'a DataView; encode binary data as a base64 string'],
  // Boxed primitives: JSON sends the primitive, so the consumer would not get the same value back.
  [Number, 'a Number object (new Number(…)), which JSON turns into a plain number; pass the number'],
  [String, 'a String object (new String(…)), which JSON turns into a plain string; pass the string'],
  [Boolean, 'a Boolean object (new Boolean(…)), which JSON turns into a plain boolean; pass the boolean'],
  [BigInt as unknown as abstract new () => object, 'a BigInt object, which JSON cannot represent; send it as a string'],
  [Symbol as unknown as abstract new () => object, 'a Symbol object, which JSON turns into {}'],
];

/**
 * Turns an integration event into its JSON body, refusing anything that would not come back the
 * same: the check that makes "integration events are simple JSON objects" hold at publish time.
 *
 * What passes: strings, finite numbers, booleans, null, valid Dates (sent as ISO 8601 strings; declare
 * the field with `@Type(() => Date)` to get a Date back), arrays without holes of those, and objects
 * (plain, or class instances with at least one own field) of those. `undefined` object fields are left
 * out, as JSON does, unless the event rebuilt as the consumer rebuilds it gives the field a value (its
 * class initialises it). Everything else is refused with the path to the offending value.
 */
export function serializeEvent(eventName: string, event: object, maxDepth: number): string {
  const walk: Walk = { ancestors: new Set<object>(), trail: [], undefinedFields: [] };
  assertJsonSafe(eventName, event, '$', 0, maxDepth, walk, true);
  const json = JSON.stringify(event);
  if (walk.undefinedFields.length > 0) assertUndefinedFieldsComeBackUndefined(eventName, event, json, walk.undefinedFields);
  return json;
}

/** What a walk over an event keeps: the objects above the current one, the keys to it, what it found. */
interface Walk {
  readonly ancestors: Set<object>;
  /** The keys and indexes from the event to the current value. */
  readonly trail: Array<string | number>;
  /** The `undefined` fields (left out of the body) whose class initialises them, by path and keys. */
  readonly undefinedFields: Array<{ readonly path: string; readonly trail: ReadonlyArray<string | number> }>;
}

function assertJsonSafe(
  eventName: string,
  value: unknown,
  path: string,
  depth: number,
  maxDepth: number,
  walk: Walk,
  isRoot: boolean,
): void {
  const { ancestors, trail } = walk;
  const refuse = (reason: string): never => {
    throw new IntegrationEventSerializationError(eventName, path, reason);
  };
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) refuse(`is ${value}, which JSON turns into null`);
      return;
    case 'bigint':
      return refuse('is a BigInt, which JSON cannot represent; send it as a string');
    case 'symbol':
      return refuse('is a Symbol, which JSON drops');
    case 'function':
      return refuse('is a function, which JSON drops');
    case 'undefined':
      return refuse('is undefined');
  }
  if (value === null) return;
  const object = value as object;

  if (object instanceof Date) {
    if (Number.isNaN(object.getTime())) refuse('is an invalid Date, which JSON turns into null');
    if (object.toJSON !== Date.prototype.toJSON) {
      refuse('is a Date with a custom toJSON(), so what is sent would not come back as the same value; convert it first');
    }
    return;
  }
  if (ancestors.has(object)) refuse('is a circular reference');
  if (depth >= maxDepth) refuse(`is nested deeper than ${maxDepth} levels (consumer.maxDepth)`);
  if (ArrayBuffer.isView(object)) refuse('is a typed array or Buffer; encode binary data as a base64 string');
  for (const [type, reason] of LOSSY_BUILT_INS) {
    if (object instanceof type) refuse(`is ${reason}`);
  }
  if (typeof (object as { toJSON?: unknown }).toJSON === 'function') {
    refuse('has a custom toJSON(), so what is sent would not come back as the same value; convert it first');
  }
  if (Object.getOwnPropertySymbols(object).some((symbol) => Object.prototype.propertyIsEnumerable.call(object, symbol))) {
    refuse('has Symbol keys, which JSON drops');
  }

  ancestors.add(object);
  if (Array.isArray(object)) {
    // Holes are refused below; past them, a key that is not an index is a field JSON leaves out. Only
    // an array with more keys than items can have one (with fewer, or as many and a hole, its hole is
    // refused anyway).
    const keys = Object.keys(object);
    if (keys.length > object.length) {
      const extra = keys.find((key) => !/^(0|[1-9]\d*)$/.test(key) || Number(key) >= object.length);
      refuse(`is an array with a field ("${extra}"), which JSON leaves out`);
    }
    for (let index = 0; index < object.length; index++) {
      if (!(index in object)) refuse(`has a hole at index ${index}, which JSON turns into null`);
      const item: unknown = object[index];
      const itemPath = `${path}[${index}]`;
      if (item === undefined) {
        throw new IntegrationEventSerializationError(eventName, itemPath, 'is undefined, which JSON turns into null');
      }
      trail.push(index);
      assertJsonSafe(eventName, item, itemPath, depth + 1, maxDepth, walk, false);
      trail.pop();
    }
  } else {
    const keys = Object.keys(object);
    const prototype: unknown = Object.getPrototypeOf(object);
    if (keys.length === 0 && prototype !== Object.prototype && prototype !== null) {
      // An event may carry nothing (a marker), but not data that only its getters show.
      if (!isRoot) refuse(`is a ${object.constructor?.name ?? 'class'} instance with no own fields, which JSON turns into {}`);
      const getter = getterOfInstanceState(object, prototype as object);
      if (getter !== undefined) {
        refuse(`has no own fields, only getters ("${getter}") over its own state, which JSON leaves out: the body would be {}; give the event fields`);
      }
    }
    for (const key of keys) {
      const refusedBecause = refusedKeyReason(key);
      if (refusedBecause !== undefined) refuse(`has the key "${key}", which is ${refusedBecause}`);
      const child: unknown = (object as Record<string, unknown>)[key];
      if (child === undefined) {
        // Left out of the body. A class the consumer rebuilds may give the field a value of its own: when
        // this one's class does (built once, without arguments), the whole event is rebuilt as the
        // consumer rebuilds it once it has passed, to see (a nested class without @Type comes back a
        // plain object, without it). An optional field the class leaves alone costs a lookup.
        if (initialValueOf(prototype, key) !== undefined) walk.undefinedFields.push({ path: childPath(path, key), trail: [...trail, key] });
        continue;
      }
      trail.push(key);
      assertJsonSafe(eventName, child, childPath(path, key), depth + 1, maxDepth, walk, false);
      trail.pop();
    }
  }
  ancestors.delete(object);
}

/**
 * The name of a getter along `prototype`'s chain (below Object.prototype) that shows state of `object`
 * itself (`#private` fields, a WeakMap keyed by the instance): defined on the event, but failing or
 * `undefined` on a bare object of the same class, as the consumer's rebuilt event would be. Getters of
 * constants or computed values (a clock, a class name) pass. Only asked of an event with no own fields,
 * which is rare.
 */
function getterOfInstanceState(object: object, prototype: object): string | undefined {
  const bare: object = Object.create(prototype) as object;
  for (let current: object | null = prototype; current && current !== Object.prototype; current = Object.getPrototypeOf(current) as object | null) {
    for (const [name, descriptor] of Object.entries(Object.getOwnPropertyDescriptors(current))) {
      if (!descriptor.get) continue;
      let shown: unknown;
      try {
        shown = descriptor.get.call(object);
      } catch {
        continue; // fails on the event itself: not a field it carries
      }
      if (shown === undefined) continue;
      try {
        if (descriptor.get.call(bare) === undefined) return name;
      } catch {
        return name;
      }
    }
  }
  return undefined;
}

const initialInstances = new WeakMap<object, object | null>();

/**
 * The value `key` has in an instance of the class of `prototype` built without arguments (one instance
 * per class, built the first time it is asked); `undefined` for a plain object, and for a class whose
 * constructor throws without arguments (the consumer could not rebuild it either).
 */
function initialValueOf(prototype: unknown, key: string): unknown {
  if (prototype === Object.prototype || prototype === null || typeof prototype !== 'object') return undefined;
  const constructor = (prototype as { constructor?: unknown }).constructor;
  if (typeof constructor !== 'function' || constructor.prototype !== prototype) return undefined;
  let instance = initialInstances.get(prototype);
  if (instance === undefined) {
    try {
      instance = new (constructor as new () => object)();
    } catch {
      instance = null;
    }
    initialInstances.set(prototype, instance);
  }
  if (instance === null || !Object.prototype.hasOwnProperty.call(instance, key)) return undefined;
  return (instance as Record<string, unknown>)[key];
}

/**
 * Refuses an `undefined` field (left out of the body) that comes back with a value when the consumer
 * rebuilds the event as the library does (`plainToInstance(EventClass, body)`: `new EventClass()`, then
 * the body's fields, and so for nested classes declared with `@Type`): a field the class initialises
 * (`optIn?: boolean = false`) would arrive as that value. Runs the event's class constructors, as the
 * consumer does; an event whose classes cannot be built without arguments is not asked (nothing to
 * compare with).
 */
function assertUndefinedFieldsComeBackUndefined(
  eventName: string,
  event: object,
  json: string,
  fields: Walk['undefinedFields'],
): void {
  let rebuilt: unknown;
  try {
    rebuilt = plainToInstance(event.constructor as new () => object, JSON.parse(json) as object);
  } catch {
    return;
  }
  for (const field of fields) {
    let value: unknown = rebuilt;
    for (const step of field.trail) {
      value = typeof value === 'object' && value !== null && Object.prototype.hasOwnProperty.call(value, step) ? (value as Record<string | number, unknown>)[step] : undefined;
    }
    if (value !== undefined) {
      throw new IntegrationEventSerializationError(
        eventName,
        field.path,
        `is undefined, but comes back as ${describeValue(value)}: JSON leaves the field out, and the consumer's rebuilt ` +
          `${event.constructor.name} (class-transformer) gives it the value its class initialises it with; use null for "no value"`,
      );
    }
  }
}

function describeValue(value: unknown): string {
  if (value instanceof Date) return 'a Date';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object' && value !== null) return 'an object';
  if (typeof value === 'string') return JSON.stringify(value.length > 50 ? `${value.slice(0, 50)}…` : value);
  return String(value);
}

function childPath(path: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}
