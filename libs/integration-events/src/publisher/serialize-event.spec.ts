import 'reflect-metadata';
import { Type } from 'class-transformer';
import { exceedsJsonDepth } from '../consumer/json-depth';
import { IntegrationEventSerializationError } from '../errors/integration-event-serialization.error';
import { IntegrationEventsError } from '../errors/integration-events.error';
import { serializeEvent } from './serialize-event';

const EVENT_NAME = 'ordering.order-created';
const MAX_DEPTH = 64;

const serialize = (event: object, maxDepth = MAX_DEPTH): string => serializeEvent(EVENT_NAME, event, maxDepth);

/** Runs serializeEvent, expecting it to refuse the event, and returns the error. */
function refusal(event: object, maxDepth = MAX_DEPTH): IntegrationEventSerializationError {
  let thrown: unknown;
  try {
    serialize(event, maxDepth);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(IntegrationEventSerializationError);
  return thrown as IntegrationEventSerializationError;
}

class Money {
  constructor(
    readonly amount: number,
    readonly currency: string,
  ) {}
}

class ProfileNote {
  constructor(
    readonly userId: string,
    readonly note?: string,
  ) {}
}

class ProfileUpdated {
  userId!: string;
  marketingOptIn?: boolean | null = false;
}

class PriceInEuros {
  readonly amount: number;
  currency: string | undefined;
  constructor(amount = 0) {
    this.amount = amount;
    this.currency = 'EUR';
  }
}

class PricedOrder {
  @Type(() => PriceInEuros) readonly total: PriceInEuros;
  @Type(() => PriceInEuros) readonly lines: PriceInEuros[];
  constructor(
    readonly orderId: string,
    total: PriceInEuros,
    lines: PriceInEuros[],
  ) {
    this.total = total;
    this.lines = lines;
  }
}

class UntypedPrice {
  constructor(
    readonly orderId: string,
    readonly price: PriceInEuros,
  ) {}
}

class CountsItsBuilds {
  static built = 0;
  readonly orderId: string;
  readonly note: string | undefined;
  constructor(orderId = '') {
    CountsItsBuilds.built++;
    this.orderId = orderId;
    this.note = undefined;
  }
}

class NeedsArguments {
  readonly id: string;
  readonly label?: string;
  constructor(source: { id: string; label?: string }) {
    this.id = source.id;
    this.label = source.label ?? undefined;
  }
}

class OrderLine {
  constructor(
    readonly sku: string,
    readonly price: unknown,
  ) {}
}

class OrderCreated {
  constructor(
    readonly orderId: string,
    readonly lines: unknown[],
    readonly placedAt: Date = new Date('2026-11-26T06:00:00.000Z'),
  ) {}
}

class Marker {}

class WithMethods {
  readonly id = 'm-1';
  describe(): string {
    return `marker ${this.id}`;
  }
  get upper(): string {
    return this.id.toUpperCase();
  }
}

describe('serializeEvent', () => {
  describe('what passes', () => {
    it('serializes a class instance with nested objects, arrays and a Date, exactly as JSON.stringify', () => {
      const event = new OrderCreated('o-1', [new OrderLine('a', new Money(12.5, 'EUR')), new OrderLine('b', null)]);
      const json = serialize(event);
      expect(json).toBe(JSON.stringify(event));
      expect(JSON.parse(json)).toStrictEqual({
        orderId: 'o-1',
        lines: [
          { sku: 'a', price: { amount: 12.5, currency: 'EUR' } },
          { sku: 'b', price: null },
        ],
        placedAt: '2026-11-26T06:00:00.000Z',
      });
    });

    it('accepts every JSON primitive: strings, finite numbers, booleans and null', () => {
      const event = {
        text: 'héllo "quoted" \n ✓',
        empty: '',
        zero: 0,
        negative: -12.75,
        large: Number.MAX_SAFE_INTEGER,
        tiny: Number.MIN_VALUE,
        yes: true,
        no: false,
        nothing: null,
      };
      expect(serialize(event)).toBe(JSON.stringify(event));
    });

    it('accepts nested plain objects and arrays of arrays', () => {
      const event = { a: { b: { c: [[1, 2], [], [{ d: 'x' }]] } }, list: [null, true, 'y'] };
      expect(serialize(event)).toBe(JSON.stringify(event));
    });

    it('sends a valid Date as its ISO 8601 string, at any level', () => {
      const at = new Date('2026-01-02T03:04:05.678Z');
      expect(serialize({ at, nested: { at }, list: [at] })).toBe(
        '{"at":"2026-01-02T03:04:05.678Z","nested":{"at":"2026-01-02T03:04:05.678Z"},"list":["2026-01-02T03:04:05.678Z"]}',
      );
    });

    it('leaves out object fields that are undefined, as JSON does', () => {
      const event = { orderId: 'o-1', note: undefined, nested: { kept: 1, dropped: undefined } };
      expect(serialize(event)).toBe('{"orderId":"o-1","nested":{"kept":1}}');
    });

    it('leaves out an undefined field of a class that gives it no value when built without arguments', () => {
      expect(serialize(new ProfileNote('u-1'))).toBe('{"userId":"u-1"}');
      expect(serialize({ profile: new ProfileNote('u-1', undefined) })).toBe('{"profile":{"userId":"u-1"}}');
    });

    it('refuses an undefined field that the class initialises: the consumer, rebuilding the class, would get that value back', () => {
      const event = new ProfileUpdated();
      event.userId = 'u-1';
      event.marketingOptIn = undefined;
      const error = refusal(event);
      expect(error.path).toBe('$.marketingOptIn');
      expect(error.message).toContain(
        '$.marketingOptIn is undefined, but comes back as false: JSON leaves the field out, and the consumer\'s rebuilt ' +
          'ProfileUpdated (class-transformer) gives it the value its class initialises it with; use null for "no value"',
      );
      event.marketingOptIn = null;
      expect(serialize(event)).toBe('{"userId":"u-1","marketingOptIn":null}');
    });

    it('refuses it in a nested class declared with @Type, which the consumer rebuilds too, in an array as well', () => {
      const price = new PriceInEuros(5);
      price.currency = undefined;
      const error = refusal(new PricedOrder('o-1', price, []));
      expect(error.path).toBe('$.total.currency');
      expect(error.message).toContain('$.total.currency is undefined, but comes back as "EUR"');
      const line = new PriceInEuros(7);
      line.currency = undefined;
      expect(refusal(new PricedOrder('o-1', new PriceInEuros(5), [new PriceInEuros(1), line])).path).toBe('$.lines[1].currency');
    });

    it('leaves it out in a nested class without @Type: the consumer gets a plain object, without the initial value', () => {
      const price = new PriceInEuros(5);
      price.currency = undefined;
      expect(serialize({ price })).toBe('{"price":{"amount":5}}');
      expect(serialize(new UntypedPrice('o-1', price))).toBe('{"orderId":"o-1","price":{"amount":5}}');
    });

    it('builds a class once to learn its initial values, not at every publish of an event with an optional field unset', () => {
      const before = CountsItsBuilds.built;
      for (let i = 0; i < 3; i++) expect(serialize(new CountsItsBuilds(`o-${i}`))).toBe(`{"orderId":"o-${i}"}`);
      // The three events, and one instance built without arguments to compare with.
      expect(CountsItsBuilds.built - before).toBe(4);
    });

    it('leaves the field out when the class cannot be built without arguments (nothing to compare with)', () => {
      expect(serialize(new NeedsArguments({ id: 'x' }))).toBe('{"id":"x"}');
    });

    it('accepts an empty top-level event (an event class with no fields)', () => {
      expect(serialize(new Marker())).toBe('{}');
      expect(serialize({})).toBe('{}');
    });

    it('sends only the own fields of a class instance, not its methods or getters', () => {
      expect(serialize({ marker: new WithMethods() })).toBe('{"marker":{"id":"m-1"}}');
    });

    it('accepts an object without a prototype', () => {
      const bare = Object.assign(Object.create(null) as Record<string, unknown>, { id: 'x' });
      expect(serialize({ bare })).toBe('{"bare":{"id":"x"}}');
    });

    it('accepts the same object referenced twice (shared, not circular)', () => {
      const money = new Money(1, 'EUR');
      const event = { price: money, total: money, list: [money, money] };
      expect(serialize(event)).toBe(JSON.stringify(event));
    });

    it('accepts keys that are not identifiers', () => {
      const event = { 'with-dash': 1, 'with space': { '0': true }, ümlaut: 'ok' };
      expect(serialize(event)).toBe(JSON.stringify(event));
    });

    it('accepts non-enumerable symbol keys, which are invisible to JSON', () => {
      const event = { id: 1 };
      Object.defineProperty(event, Symbol('internal'), { value: 'hidden', enumerable: false });
      expect(serialize(event)).toBe('{"id":1}');
    });
  });

  describe('the error of a refused event', () => {
    it('is an IntegrationEventsError with the event name, the path and the reason', () => {
      const error = refusal(new OrderCreated('o-1', [new OrderLine('a', 1), new OrderLine('b', 2), new OrderLine('c', 10n)]));
      expect(error).toBeInstanceOf(IntegrationEventsError);
      expect(error.name).toBe('IntegrationEventSerializationError');
      expect(error.eventName).toBe(EVENT_NAME);
      expect(error.path).toBe('$.lines[2].price');
      expect(error.reason).toBe('is a BigInt, which JSON cannot represent; send it as a string');
      expect(error.message).toBe(
        'Integration event "ordering.order-created" cannot be published: $.lines[2].price is a BigInt, which JSON ' +
          'cannot represent; send it as a string. Integration events must be plain JSON data (strings, finite ' +
          'numbers, booleans, null, arrays, objects of those, and Date); convert the value before publishing. ' +
          'Nothing was written to the outbox.',
      );
    });

    it('quotes keys that are not identifiers in the path', () => {
      expect(refusal({ 'unit-price': { 'amount in cents': Number.NaN } }).path).toBe('$["unit-price"]["amount in cents"]');
    });
  });

  describe('what is refused, with the path to the value', () => {
    const circular: Record<string, unknown> = { id: 1 };
    circular.self = circular;
    const circularInArray: unknown[] = [];
    circularInArray.push({ back: circularInArray });

    const cases: ReadonlyArray<[string, object, string, string]> = [
      // [case, event, path, fragment of the reason]
      ['a BigInt', { total: 10n }, '$.total', 'is a BigInt, which JSON cannot represent; send it as a string'],
      ['a function value', { compute: () => 1 }, '$.compute', 'is a function, which JSON drops'],
      ['a Symbol value', { kind: Symbol('kind') }, '$.kind', 'is a Symbol, which JSON drops'],
      ['a Symbol key', { nested: { [Symbol('tag')]: 'x', ok: 1 } }, '$.nested', 'has Symbol keys, which JSON drops'],
      ['a circular reference', { order: circular }, '$.order.self', 'is a circular reference'],
      ['a circular reference through an array', { list: circularInArray }, '$.list[0].back', 'is a circular reference'],
      ['a Map', { byId: new Map([['a', 1]]) }, '$.byId', 'is a Map (JSON turns it into {}); use an object or an array of entries'],
      ['a Set', { tags: new Set(['a']) }, '$.tags', 'is a Set (JSON turns it into {}); use an array'],
      ['a WeakMap', { cache: new WeakMap() }, '$.cache', 'is a WeakMap, which has no JSON form'],
      ['a WeakSet', { seen: new WeakSet() }, '$.seen', 'is a WeakSet, which has no JSON form'],
      ['a RegExp', { pattern: /a+/g }, '$.pattern', 'is a RegExp (JSON turns it into {}); send its source as a string'],
      ['an Error', { failure: new Error('boom') }, '$.failure', 'is an Error (JSON turns it into {}); send its message as a string'],
      ['an Error subclass', { failure: new TypeError('boom') }, '$.failure', 'is an Error'],
      ['a Promise', { pending: Promise.resolve(1) }, '$.pending', 'is a Promise; await it before publishing'],
      ['a Buffer', { data: Buffer.from('hi') }, '$.data', 'is a typed array or Buffer; encode binary data as a base64 string'],
      ['a Uint8Array', { data: new Uint8Array([1, 2]) }, '$.data', 'is a typed array or Buffer'],
      ['a Float64Array', { data: new Float64Array(1) }, '$.data', 'is a typed array or Buffer'],
      ['a DataView', { data: new DataView(new ArrayBuffer(2)) }, '$.data', 'is a typed array or Buffer'],
      ['an ArrayBuffer', { data: new ArrayBuffer(2) }, '$.data', 'is an ArrayBuffer; encode binary data as a base64 string'],
      ['NaN', { price: Number.NaN }, '$.price', 'is NaN, which JSON turns into null'],
      ['Infinity', { price: Number.POSITIVE_INFINITY }, '$.price', 'is Infinity, which JSON turns into null'],
      ['-Infinity', { price: Number.NEGATIVE_INFINITY }, '$.price', 'is -Infinity, which JSON turns into null'],
      ['an invalid Date', { placedAt: new Date('not a date') }, '$.placedAt', 'is an invalid Date, which JSON turns into null'],
      ['an object with a custom toJSON (URL)', { link: new URL('https://example.com/a') }, '$.link', 'has a custom toJSON(), so what is sent would not come back as the same value; convert it first'],
      ['an object literal with a toJSON', { money: { amount: 1, toJSON: () => '1 EUR' } }, '$.money', 'has a custom toJSON()'],
      ['a nested class instance with no own fields', { marker: new Marker() }, '$.marker', 'is a Marker instance with no own fields, which JSON turns into {}'],
      ['the key "constructor"', { meta: { constructor: 'x' } }, '$.meta', 'has the key "constructor", which is refused to prevent prototype pollution'],
      ['the key "prototype"', { prototype: {} }, '$', 'has the key "prototype", which is refused to prevent prototype pollution'],
      ['the key "valueOf" (class-transformer would drop it)', { tagCounts: { sale: 3, valueOf: 1 } }, '$.tagCounts', 'has the key "valueOf", which is a method name of every object: class-transformer would leave it out of the rebuilt event'],
      ['the key "toString" at the top', { toString: 'x' }, '$', 'has the key "toString", which is a method name of every object'],
      ['the key "hasOwnProperty" in an array item', { lines: [{ hasOwnProperty: true }] }, '$.lines[0]', 'has the key "hasOwnProperty", which is a method name of every object'],
      ['the key "__lookupGetter__"', { meta: { __lookupGetter__: 1 } }, '$.meta', 'has the key "__lookupGetter__", which is a method name of every object'],
      ['a BigInt in an array', { amounts: [1, 2n] }, '$.amounts[1]', 'is a BigInt'],
      ['a Number object', { n: new Number(5) }, '$.n', 'is a Number object (new Number(…)), which JSON turns into a plain number; pass the number'],
      ['a String object', { s: new String('ab') }, '$.s', 'is a String object (new String(…)), which JSON turns into a plain string; pass the string'],
      ['an empty String object', { s: new String('') }, '$.s', 'is a String object'],
      ['a Boolean object', { b: new Boolean(false) }, '$.b', 'is a Boolean object (new Boolean(…)), which JSON turns into a plain boolean; pass the boolean'],
      ['a BigInt object', { total: Object(10n) as object }, '$.total', 'is a BigInt object, which JSON cannot represent'],
      ['a Symbol object', { kind: Object(Symbol('kind')) as object }, '$.kind', 'is a Symbol object, which JSON turns into {}'],
      ['a NaN deep inside', { a: [{ b: [{ c: Number.NaN }] }] }, '$.a[0].b[0].c', 'is NaN'],
    ];

    it.each(cases)('%s', (_case, event, path, reason) => {
      const error = refusal(event);
      expect(error.path).toBe(path);
      expect(error.reason).toContain(reason);
      expect(error.message).toContain(`: ${path} ${reason}`);
    });

    it('refuses the key "__proto__" (as JSON.parse creates it)', () => {
      const event = { payload: JSON.parse('{"ok": 1, "__proto__": {"polluted": true}}') as object };
      const error = refusal(event);
      expect(error.path).toBe('$.payload');
      expect(error.reason).toBe('has the key "__proto__", which is refused to prevent prototype pollution');
    });

    it('refuses a top-level function field of a class instance', () => {
      class WithCallback {
        readonly id = 'x';
        readonly onDone = (): void => undefined;
      }
      const error = refusal(new WithCallback());
      expect(error.path).toBe('$.onDone');
      expect(error.reason).toBe('is a function, which JSON drops');
    });

    it('refuses an event whose data sits only in getters (a #private field behind them), which would be sent as {}', () => {
      class OrderShipped {
        readonly #orderId: string;
        constructor(orderId: string) {
          this.#orderId = orderId;
        }
        get orderId(): string {
          return this.#orderId;
        }
      }
      class ExpressShipped extends OrderShipped {}
      for (const event of [new OrderShipped('o-1'), new ExpressShipped('o-2')]) {
        const error = refusal(event);
        expect(error.path).toBe('$');
        expect(error.reason).toBe('has no own fields, only getters ("orderId") over its own state, which JSON leaves out: the body would be {}; give the event fields');
      }
      // A marker event, with nothing to carry, still goes, convenience getters of constants included.
      class BaseEvent {
        get kind(): string {
          return this.constructor.name;
        }
      }
      class CacheCleared extends BaseEvent {
        get scope(): string {
          return 'all';
        }
        get at(): string {
          return new Date().toISOString();
        }
      }
      expect(serialize(new Marker())).toBe('{}');
      expect(serialize(new CacheCleared())).toBe('{}');
      // State the consumer would not get back, whatever its type: a BigInt, or kept in a WeakMap.
      class Paid {
        readonly #amount: bigint;
        constructor(amount: bigint) {
          this.#amount = amount;
        }
        get amount(): bigint {
          return this.#amount;
        }
      }
      const notes = new WeakMap<object, string>();
      class Noted {
        constructor(note: string) {
          notes.set(this, note);
        }
        get note(): string | undefined {
          return notes.get(this);
        }
      }
      expect(refusal(new Paid(10n)).reason).toContain('only getters ("amount")');
      expect(refusal(new Noted('hello')).reason).toContain('only getters ("note")');
    });

    it('refuses a Date whose toJSON() was replaced (a subclass), which would not come back as that Date', () => {
      class DayOnly extends Date {
        override toJSON(): string {
          return this.toISOString().slice(0, 10);
        }
      }
      expect(refusal({ shippedOn: new DayOnly('2026-11-27T06:00:00.000Z') }).path).toBe('$.shippedOn');
    });

    it('refuses a sparse array, naming the index of the hole', () => {
      const sparse: number[] = [1];
      sparse[2] = 3;
      const error = refusal({ lines: sparse });
      expect(error.path).toBe('$.lines');
      expect(error.reason).toBe('has a hole at index 1, which JSON turns into null');
    });

    it('refuses an array carrying a field besides its items (a match() result\'s index), which JSON leaves out', () => {
      const match = 'order-42'.match(/(\d+)/)!;
      const error = refusal({ parts: match });
      expect(error.path).toBe('$.parts');
      expect(error.reason).toBe('is an array with a field ("index"), which JSON leaves out');
      // An array subclass's items survive: it goes as the plain array its items make.
      class Lines extends Array<string> {}
      expect(() => serializeEvent('x', { lines: Lines.from(['a', 'b']) }, 64)).not.toThrow();
    });

    it('refuses undefined inside an array, with the path of the item', () => {
      const error = refusal({ lines: ['a', undefined, 'c'] });
      expect(error.path).toBe('$.lines[1]');
      expect(error.reason).toContain('undefined, which JSON turns into null');
      expect(error.message).toContain('$.lines[1] is undefined, which JSON turns into null.');
    });
  });

  describe('nesting depth', () => {
    /** `levels` nested objects: { a: { a: ... {} } }. */
    function nested(levels: number): object {
      let value: object = {};
      for (let i = 1; i < levels; i++) value = { a: value };
      return value;
    }

    it('accepts exactly maxDepth levels of objects and arrays', () => {
      expect(serialize(nested(3), 3)).toBe('{"a":{"a":{}}}');
      expect(serialize({ list: [[]] }, 3)).toBe('{"list":[[]]}');
    });

    it('refuses one level more, naming the path and consumer.maxDepth', () => {
      const error = refusal(nested(4), 3);
      expect(error.path).toBe('$.a.a.a');
      expect(error.reason).toBe('is nested deeper than 3 levels (consumer.maxDepth)');
      expect(refusal({ list: [[[]]] }, 3).path).toBe('$.list[0][0]');
    });

    it('counts a Date as a value, not a level', () => {
      expect(serialize({ a: { at: new Date(0) } }, 2)).toBe('{"a":{"at":"1970-01-01T00:00:00.000Z"}}');
    });

    it('agrees with the depth check consumers run before parsing', () => {
      for (let levels = 1; levels <= 8; levels++) {
        const event = nested(levels);
        const consumerRefuses = exceedsJsonDepth(JSON.stringify(event), 5);
        if (consumerRefuses) expect(() => serialize(event, 5)).toThrow(IntegrationEventSerializationError);
        else expect(serialize(event, 5)).toBe(JSON.stringify(event));
      }
    });

    it('refuses a deeply nested event without overflowing the stack', () => {
      expect(refusal(nested(10_000)).reason).toBe(`is nested deeper than ${MAX_DEPTH} levels (consumer.maxDepth)`);
    });
  });
});
