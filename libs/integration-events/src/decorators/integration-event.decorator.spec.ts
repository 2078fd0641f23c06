import 'reflect-metadata';
import { IntegrationEventDefinitionError } from '../errors/integration-event-definition.error';
import { IntegrationEventsError } from '../errors/integration-events.error';
import { IntegrationEvent, type IntegrationEventOptions } from './integration-event.decorator';
import {
  findIntegrationEventMetadata,
  getIntegrationEventMetadata,
  INTEGRATION_EVENT_METADATA,
} from './integration-event-metadata';

/** Applies @IntegrationEvent(options) to a fresh class named `className`, and returns the class. */
function decorate(options: IntegrationEventOptions, className = 'SomethingHappened'): abstract new () => object {
  const target = { [className]: class {} }[className]!;
  IntegrationEvent(options)(target);
  return target;
}

/** Runs `action`, expecting an IntegrationEventDefinitionError, and returns it. */
function definitionError(action: () => unknown): IntegrationEventDefinitionError {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(IntegrationEventDefinitionError);
  return thrown as IntegrationEventDefinitionError;
}

describe('@IntegrationEvent', () => {
  describe('records the name and version on the class', () => {
    it('with decorator syntax', () => {
      @IntegrationEvent({ name: 'ordering.order-created', version: 3 })
      class OrderCreatedIntegrationEvent {
        constructor(readonly orderId: string) {}
      }
      expect(getIntegrationEventMetadata(OrderCreatedIntegrationEvent)).toStrictEqual({
        name: 'ordering.order-created',
        version: 3,
      });
      expect(Reflect.getOwnMetadata(INTEGRATION_EVENT_METADATA, OrderCreatedIntegrationEvent)).toStrictEqual({
        name: 'ordering.order-created',
        version: 3,
      });
    });

    it('defaults the version to 1', () => {
      expect(getIntegrationEventMetadata(decorate({ name: 'ordering.order-created' }))).toStrictEqual({
        name: 'ordering.order-created',
        version: 1,
      });
    });
  });

  it('refuses a second @IntegrationEvent on the same class, which would replace the first', () => {
    const define = (): void => {
      @IntegrationEvent({ name: 'ordering.order-created', version: 2 })
      @IntegrationEvent({ name: 'ordering.order-created' })
      class OrderCreatedTwice {
        constructor(readonly orderId: string) {}
      }
      void OrderCreatedTwice;
    };
    expect(define).toThrow(IntegrationEventDefinitionError);
    expect(define).toThrow(
      '@IntegrationEvent on OrderCreatedTwice: the class already has one ("ordering.order-created" version 1). ' +
        'A class is one event: give each name and version a class of its own.',
    );
  });

  it('lets a subclass be an event of its own', () => {
    @IntegrationEvent({ name: 'ordering.order-created' })
    class OrderCreated {
      constructor(readonly orderId: string) {}
    }
    @IntegrationEvent({ name: 'ordering.order-created', version: 2 })
    class OrderCreatedV2 extends OrderCreated {}
    expect(getIntegrationEventMetadata(OrderCreatedV2)).toStrictEqual({ name: 'ordering.order-created', version: 2 });
    expect(getIntegrationEventMetadata(OrderCreated)).toStrictEqual({ name: 'ordering.order-created', version: 1 });
  });

  describe('event names', () => {
    it.each([
      'ordering.order-created',
      'a',
      '0',
      'payments.v2.refund_issued',
      'a-b_c.d',
      'order42.created7',
      'a'.repeat(200),
    ])('accepts %j', (name) => {
      expect(getIntegrationEventMetadata(decorate({ name })).name).toBe(name);
    });

    it.each([
      ['upper case', 'Ordering.OrderCreated'],
      ['a "*" wildcard', 'ordering.*'],
      ['a "#" wildcard', 'ordering.#'],
      ['a space', 'ordering order-created'],
      ['an empty name', ''],
      ['a leading dot', '.ordering.order-created'],
      ['a trailing dot', 'ordering.'],
      ['two separators in a row', 'ordering..order-created'],
      ['mixed separators in a row', 'ordering.-created'],
      ['a slash', 'ordering/order-created'],
      ['a non-ASCII letter', 'ordering.commande-créée'],
      ['over 200 characters', 'a'.repeat(201)],
    ])('refuses %s (%j) and says what a valid name looks like', (_case, name) => {
      const error = definitionError(() => decorate({ name }, 'BadEvent'));
      expect(error).toBeInstanceOf(IntegrationEventsError);
      expect(error.eventClass).toBe('BadEvent');
      expect(error.message).toBe(
        `@IntegrationEvent on BadEvent: name ${JSON.stringify(name)} is not a valid event name. Use lower-case ` +
          'letters and digits in words separated by ".", "-" or "_" (at most 200 characters), ' +
          "e.g. 'ordering.order-created'.",
      );
    });

    it('refuses a name that is not a string', () => {
      const error = definitionError(() => decorate({ name: 42 } as unknown as IntegrationEventOptions, 'BadEvent'));
      expect(error.message).toContain('name 42 is not a valid event name');
    });

    it('refuses missing options', () => {
      const error = definitionError(() => decorate(undefined as unknown as IntegrationEventOptions, 'BadEvent'));
      expect(error.eventClass).toBe('BadEvent');
      expect(error.message).toContain('@IntegrationEvent on BadEvent: name undefined is not a valid event name');
    });

    it('leaves a refused class undecorated', () => {
      const target = class Refused {};
      expect(() => IntegrationEvent({ name: 'Bad' })(target)).toThrow(IntegrationEventDefinitionError);
      expect(findIntegrationEventMetadata(target)).toBeUndefined();
    });
  });

  describe('versions', () => {
    it.each([1, 2, 1_000_000])('accepts %d', (version) => {
      expect(getIntegrationEventMetadata(decorate({ name: 'a.b', version })).version).toBe(version);
    });

    it.each([0, -1, 1.5, 1_000_001, Number.NaN, Number.POSITIVE_INFINITY])(
      'refuses %d and asks for a whole number from 1 to 1,000,000',
      (version) => {
        const error = definitionError(() => decorate({ name: 'a.b', version }, 'BadVersion'));
        expect(error.eventClass).toBe('BadVersion');
        expect(error.message).toBe(
          `@IntegrationEvent on BadVersion: version ${String(version)} is not valid. Use a whole number from 1 to 1,000,000.`,
        );
      },
    );

    it('refuses a null version instead of taking it for 1 (null is a value; left out is 1)', () => {
      const error = definitionError(() => decorate({ name: 'a.b', version: null } as unknown as IntegrationEventOptions));
      expect(error.message).toContain('version null is not valid');
    });

    it('refuses an option it does not know, such as a misspelt version, instead of sending version 1', () => {
      const error = definitionError(() => decorate({ name: 'a.b', verison: 2 } as unknown as IntegrationEventOptions, 'Typo'));
      expect(error.eventClass).toBe('Typo');
      expect(error.message).toBe('@IntegrationEvent on Typo: "verison" is not an option; the options are "name" and "version".');
    });

    it('refuses a version given as a string', () => {
      const error = definitionError(() => decorate({ name: 'a.b', version: '2' } as unknown as IntegrationEventOptions));
      expect(error.message).toContain('version "2" is not valid');
    });
  });
});

describe('getIntegrationEventMetadata', () => {
  it('explains how to decorate an undecorated class', () => {
    class PlainClass {}
    const error = definitionError(() => getIntegrationEventMetadata(PlainClass));
    expect(error.eventClass).toBe('PlainClass');
    expect(error.message).toBe(
      "PlainClass is not an integration event: add @IntegrationEvent({ name: '<service>.<event>', version: 1 }) to the class.",
    );
  });

  it('names an anonymous class as such', () => {
    const error = definitionError(() => getIntegrationEventMetadata((() => class {})()));
    expect(error.eventClass).toBe('(anonymous class)');
    expect(error.message).toContain('(anonymous class) is not an integration event');
  });

  it('points at a circular import when given undefined', () => {
    const error = definitionError(() => getIntegrationEventMetadata(undefined));
    expect(error.eventClass).toBe('undefined');
    expect(error.message).toBe(
      'Expected an integration event class, got undefined. If it is undefined, look for a circular import.',
    );
  });

  it.each<[string, unknown, string]>([
    ['null', null, 'object'],
    ['a string', 'ordering.order-created', 'string'],
    ['an instance', {}, 'object'],
  ])('refuses %s, naming its type', (_case, value, type) => {
    const error = definitionError(() => getIntegrationEventMetadata(value));
    expect(error.eventClass).toBe(type);
    expect(error.message).toContain(`Expected an integration event class, got ${type}.`);
  });

  describe('subclasses', () => {
    @IntegrationEvent({ name: 'ordering.order-created' })
    class OrderCreated {}

    class PriorityOrderCreated extends OrderCreated {}

    @IntegrationEvent({ name: 'ordering.order-created-express', version: 2 })
    class ExpressOrderCreated extends OrderCreated {}

    it('does not treat the subclass of an event as decorated: it is a different event', () => {
      expect(findIntegrationEventMetadata(PriorityOrderCreated)).toBeUndefined();
      const error = definitionError(() => getIntegrationEventMetadata(PriorityOrderCreated));
      expect(error.eventClass).toBe('PriorityOrderCreated');
    });

    it('gives a decorated subclass its own metadata and leaves the parent unchanged', () => {
      expect(getIntegrationEventMetadata(ExpressOrderCreated)).toStrictEqual({
        name: 'ordering.order-created-express',
        version: 2,
      });
      expect(getIntegrationEventMetadata(OrderCreated)).toStrictEqual({ name: 'ordering.order-created', version: 1 });
    });
  });
});

describe('findIntegrationEventMetadata', () => {
  it('returns undefined for anything that is not a decorated class', () => {
    for (const value of [undefined, null, 'a.b', 42, {}, class Plain {}, () => undefined]) {
      expect(findIntegrationEventMetadata(value)).toBeUndefined();
    }
  });
});
