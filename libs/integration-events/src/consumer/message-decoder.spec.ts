import 'reflect-metadata';
import { Type } from 'class-transformer';
import { IsDate, IsInt, IsOptional, IsString, Min, MinLength, Validate, ValidateNested, ValidatorConstraint, type ValidatorConstraintInterface } from 'class-validator';
import { IntegrationEvent } from '../decorators/integration-event.decorator';
import { getIntegrationEventMetadata, type IntegrationEventClass } from '../decorators/integration-event-metadata';
import { resolveRetryPolicy } from '../retry/resolve-retry-policy';
import type { DiscoveredHandler } from '../discovery/discovered-handler';
import { MessageHeaders } from '../envelope/message-headers';
import { decodeMessage, type DecodeLimits, type DecodedMessage } from './message-decoder';
import type { IncomingMessage } from './incoming-message';

class OrderLine {
  @IsString()
  sku!: string;

  @IsInt()
  @Min(1)
  quantity!: number;
}

@IntegrationEvent({ name: 'ordering.order-created', version: 2 })
class OrderCreatedIntegrationEvent {
  @IsString()
  @MinLength(1)
  orderId!: string;

  @Type(() => Date)
  @IsDate()
  placedAt!: Date;

  @IsOptional()
  @ValidateNested({ each: true })
  @Type(() => OrderLine)
  lines?: OrderLine[];

  describe(): string {
    return `order ${this.orderId}`;
  }
}

@ValidatorConstraint({ name: 'throwsWhenChecked', async: true })
class ThrowsWhenChecked implements ValidatorConstraintInterface {
  async validate(): Promise<boolean> {
    throw new Error('the rule service is down');
  }
}

@IntegrationEvent({ name: 'ordering.order-created', version: 2 })
class EventWithThrowingRule {
  @Validate(ThrowsWhenChecked)
  orderId!: string;
}

@ValidatorConstraint({ name: 'throwsAtOnce' })
class ThrowsAtOnce implements ValidatorConstraintInterface {
  validate(value: unknown): boolean {
    return (value as string).startsWith('o-');
  }
}

@IntegrationEvent({ name: 'ordering.order-created', version: 4 })
class EventWithBrittleRule {
  @Validate(ThrowsAtOnce)
  orderId!: string;
}

@ValidatorConstraint({ name: 'neverAnswers', async: true })
class NeverAnswers implements ValidatorConstraintInterface {
  validate(): Promise<boolean> {
    return new Promise(() => undefined);
  }
}

@IntegrationEvent({ name: 'ordering.order-created', version: 3 })
class EventWithHangingRule {
  @Validate(NeverAnswers)
  orderId!: string;
}

@IntegrationEvent({ name: 'ordering.order-cancelled', version: 2 })
class ThrowsNullWhenBuilt {
  constructor() {
    // Not an Error: what the decoder must survive.
    throw null;
  }
}

@ValidatorConstraint({ name: 'rejectsWithABareObject', async: true })
class RejectsWithABareObject implements ValidatorConstraintInterface {
  validate(): Promise<boolean> {
    return Promise.reject(Object.create(null));
  }
}

@IntegrationEvent({ name: 'ordering.order-created', version: 5 })
class EventWithBareRejection {
  @Validate(RejectsWithABareObject)
  orderId!: string;
}

@IntegrationEvent({ name: 'ordering.order-cancelled' })
class StrictConstructorEvent {
  readonly orderId: string;

  constructor(orderId: string) {
    this.orderId = orderId.trim(); // throws when class-transformer calls it without arguments
  }
}

function handlerFor(eventClass: IntegrationEventClass, name = 'OrderCreatedHandler'): DiscoveredHandler {
  return {
    name,
    instance: { handle: () => undefined },
    eventClass,
    event: getIntegrationEventMetadata(eventClass),
    queue: `billing.${name}`,
    prefetch: 10,
    concurrency: 10,
    deadLetterQueue: `billing.${name}.dlq`,
    retryPolicy: resolveRetryPolicy(),
    timeoutMs: 60_000,
    inbox: true,
    otherVersions: new Map(),
  };
}

const HANDLER = handlerFor(OrderCreatedIntegrationEvent);
const LIMITS: DecodeLimits = { maxBodyBytes: 1_024, maxDepth: 8 };
const OCCURRED_AT = '2026-11-26T06:00:00.000Z';
const VALID_BODY = { orderId: 'o-1', placedAt: '2026-11-25T10:00:00.000Z', lines: [{ sku: 'a', quantity: 2 }] };

const HEADERS = {
  [MessageHeaders.EventName]: 'ordering.order-created',
  [MessageHeaders.EventVersion]: 2,
  [MessageHeaders.OccurredAt]: OCCURRED_AT,
  [MessageHeaders.SourceService]: 'ordering',
  [MessageHeaders.CorrelationId]: 'corr-1',
};

interface MessageOverrides {
  readonly body?: Buffer | string | object;
  readonly messageId?: unknown;
  readonly routingKey?: string;
  readonly headers?: Record<string, unknown>;
  readonly routed?: boolean;
}

function message(overrides: MessageOverrides = {}): IncomingMessage {
  const body = overrides.body ?? VALID_BODY;
  return {
    body: Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    messageId: 'messageId' in overrides ? overrides.messageId : 'msg-1',
    routingKey: overrides.routingKey ?? 'ordering.order-created',
    headers: overrides.headers ?? HEADERS,
    redelivered: false,
    routed: overrides.routed ?? true,
  };
}

/** Headers with some replaced; a value of undefined removes the header. */
function headersWith(changes: Record<string, unknown>): Record<string, unknown> {
  const headers: Record<string, unknown> = { ...HEADERS, ...changes };
  for (const [key, value] of Object.entries(changes)) if (value === undefined) delete headers[key];
  return headers;
}

async function decode(overrides: MessageOverrides = {}, handler = HANDLER, limits = LIMITS): Promise<DecodedMessage> {
  return decodeMessage(handler, message(overrides), limits);
}

/** Decodes, expecting a poison message, and returns its reason. */
async function poisonReason(overrides: MessageOverrides, handler = HANDLER, limits = LIMITS): Promise<string> {
  const decoded = await decode(overrides, handler, limits);
  if (decoded.ok) throw new Error(`expected a poison message, got ${JSON.stringify(decoded)}`);
  return decoded.reason;
}

describe('decodeMessage', () => {
  describe('a valid message', () => {
    it('is rebuilt as an instance of the event class, with its contract fields', async () => {
      const decoded = await decode();
      if (!decoded.ok) throw new Error(decoded.reason);
      expect(decoded.messageId).toBe('msg-1');
      expect(decoded.eventName).toBe('ordering.order-created');
      expect(decoded.eventVersion).toBe(2);
      expect(decoded.occurredAt).toStrictEqual(new Date(OCCURRED_AT));
      expect(decoded.event).toBeInstanceOf(OrderCreatedIntegrationEvent);
      const event = decoded.event as OrderCreatedIntegrationEvent;
      expect(event.orderId).toBe('o-1');
      expect(event.describe()).toBe('order o-1');
      expect(event.lines?.[0]).toBeInstanceOf(OrderLine);
      expect(event.lines?.[0]).toMatchObject({ sku: 'a', quantity: 2 });
    });

    it('restores a @Type(() => Date) field as a Date', async () => {
      const decoded = await decode();
      if (!decoded.ok) throw new Error(decoded.reason);
      const { placedAt } = decoded.event as OrderCreatedIntegrationEvent;
      expect(placedAt).toBeInstanceOf(Date);
      expect(placedAt.toISOString()).toBe('2026-11-25T10:00:00.000Z');
    });

    it.each<[string, unknown]>([
      ['a number', 2],
      ['a numeric string', '2'],
      ['a numeric string with leading zeros', '002'],
    ])('accepts the version header as %s', async (_case, version) => {
      const decoded = await decode({ headers: headersWith({ [MessageHeaders.EventVersion]: version }) });
      expect(decoded).toMatchObject({ ok: true, eventVersion: 2 });
    });

    it('falls back to the routing key when the event name header is absent', async () => {
      const decoded = await decode({ headers: headersWith({ [MessageHeaders.EventName]: undefined }) });
      expect(decoded).toMatchObject({ ok: true, eventName: 'ordering.order-created' });
    });

    it('accepts a body of exactly maxBodyBytes and exactly maxDepth levels', async () => {
      const body = JSON.stringify({ ...VALID_BODY, lines: [] });
      const padded = body.slice(0, -1) + ',"pad":"' + 'x'.repeat(LIMITS.maxBodyBytes - body.length - 9) + '"}';
      expect(Buffer.byteLength(padded)).toBe(LIMITS.maxBodyBytes);
      expect((await decode({ body: padded })).ok).toBe(true);

      const levels = LIMITS.maxDepth - 1; // plus the body object itself
      const deep = { ...VALID_BODY, extra: JSON.parse('['.repeat(levels) + ']'.repeat(levels)) as unknown };
      expect((await decode({ body: deep })).ok).toBe(true);
    });

    it('accepts multi-byte UTF-8 text', async () => {
      const decoded = await decode({ body: { ...VALID_BODY, orderId: 'commande-créée-✓' } });
      if (!decoded.ok) throw new Error(decoded.reason);
      expect((decoded.event as OrderCreatedIntegrationEvent).orderId).toBe('commande-créée-✓');
    });
  });

  describe('poison messages', () => {
    describe('message id', () => {
      it.each<[string, unknown]>([
        ['missing', undefined],
        ['empty', ''],
        ['a number', 42],
        ['with a space', 'msg 1'],
        ['over 200 characters', 'm'.repeat(201)],
      ])('refuses a message_id that is %s', async (_case, messageId) => {
        expect(await poisonReason({ messageId })).toBe('missing or malformed message_id property');
      });
    });

    describe('event name', () => {
      it('refuses a message whose event name header is another event', async () => {
        const reason = await poisonReason({ headers: headersWith({ [MessageHeaders.EventName]: 'ordering.order-shipped' }) });
        expect(reason).toBe(
          'event "ordering.order-shipped" is not the event of handler OrderCreatedHandler ("ordering.order-created")',
        );
      });

      it('trusts the header over the routing key', async () => {
        const reason = await poisonReason({
          routingKey: 'ordering.order-created',
          headers: headersWith({ [MessageHeaders.EventName]: 'ordering.order-shipped' }),
        });
        expect(reason).toContain('event "ordering.order-shipped" is not the event of handler OrderCreatedHandler');
      });

      it('refuses a message without the header whose routing key is another event', async () => {
        const reason = await poisonReason({
          routingKey: 'ordering.order-shipped',
          headers: headersWith({ [MessageHeaders.EventName]: undefined }),
        });
        expect(reason).toContain('event "ordering.order-shipped" is not the event of handler OrderCreatedHandler');
      });
    });

    describe('version', () => {
      it.each<[string, unknown]>([
        ['missing', undefined],
        ['fractional', 2.5],
        ['a non-numeric string', 'two'],
        ['a decimal string', '2.0'],
        ['a string with spaces', ' 2'],
        ['a negative string', '-2'],
        ['a boolean', true],
      ])('refuses a version header that is %s', async (_case, version) => {
        expect(await poisonReason({ headers: headersWith({ [MessageHeaders.EventVersion]: version }) })).toBe(
          'missing or malformed ie-event-version header',
        );
      });

      it.each<[unknown, number]>([
        [1, 1],
        [3, 3],
        ['3', 3],
      ])('refuses the unknown version %j and says which one the handler knows', async (version, shown) => {
        expect(await poisonReason({ headers: headersWith({ [MessageHeaders.EventVersion]: version }) })).toBe(
          `unknown version ${shown} of "ordering.order-created"; handler OrderCreatedHandler knows version 2`,
        );
      });

      describe('of a version another handler of the service takes', () => {
        const withSiblings = { ...HANDLER, otherVersions: new Map([[3, ['OrderCreatedV3Handler', 'AuditV3Handler']]]) };
        const version = (value: number, routed = true) =>
          decode({ headers: headersWith({ [MessageHeaders.EventVersion]: value }), routed }, withSiblings);

        it('leaves a routed message to those handlers: not poison', async () => {
          expect(await version(3)).toEqual({
            ok: false,
            reason: 'version 3 of "ordering.order-created" is for OrderCreatedV3Handler, AuditV3Handler',
            otherVersion: { eventVersion: 3, handlers: ['OrderCreatedV3Handler', 'AuditV3Handler'] },
          });
        });

        it('still refuses a version none of them takes', async () => {
          const decoded = await version(4);
          expect(decoded).toEqual({ ok: false, reason: 'unknown version 4 of "ordering.order-created"; handler OrderCreatedHandler knows version 2' });
        });

        it('still refuses a copy sent straight to this queue (a requeued dead letter), which they never got', async () => {
          const decoded = await version(3, false);
          expect(decoded).toEqual({ ok: false, reason: 'unknown version 3 of "ordering.order-created"; handler OrderCreatedHandler knows version 2' });
        });
      });
    });

    describe('occurred-at', () => {
      it.each<[string, unknown]>([
        ['missing', undefined],
        ['not a date', 'yesterday'],
        ['a number', Date.parse(OCCURRED_AT)],
        ['empty', ''],
      ])('refuses an occurred-at header that is %s', async (_case, occurredAt) => {
        expect(await poisonReason({ headers: headersWith({ [MessageHeaders.OccurredAt]: occurredAt }) })).toBe(
          'missing or malformed ie-occurred-at header',
        );
      });
    });

    describe('body', () => {
      it('refuses a body over maxBodyBytes, unread', async () => {
        const body = Buffer.alloc(LIMITS.maxBodyBytes + 1, 0x20);
        expect(await poisonReason({ body })).toBe('body of 1025 bytes exceeds consumer.maxBodyBytes (1024)');
      });

      it('measures the size in bytes, not characters', async () => {
        const body = JSON.stringify({ ...VALID_BODY, orderId: 'é'.repeat(500) });
        expect(body.length).toBeLessThan(LIMITS.maxBodyBytes);
        expect(await poisonReason({ body })).toMatch(/^body of \d+ bytes exceeds consumer\.maxBodyBytes \(1024\)$/);
      });

      it.each([
        ['invalid bytes', Buffer.from([0xff, 0xfe])],
        ['a truncated multi-byte character', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3]), Buffer.from('"}')])],
        ['an encoded surrogate', Buffer.from([0x7b, 0xed, 0xa0, 0x80, 0x7d])],
      ])('refuses a body that is not valid UTF-8 (%s)', async (_case, body) => {
        expect(await poisonReason({ body })).toBe('body is not valid UTF-8');
      });

      it('refuses a body nested deeper than maxDepth before parsing it', async () => {
        const parse = jest.spyOn(JSON, 'parse');
        try {
          const body = '{"orderId":' + '['.repeat(20_000) + ']'.repeat(20_000) + '}';
          expect(await poisonReason({ body }, HANDLER, { maxBodyBytes: 1_000_000, maxDepth: 8 })).toBe(
            'body is nested deeper than consumer.maxDepth (8)',
          );
          expect(parse).not.toHaveBeenCalled();
        } finally {
          parse.mockRestore();
        }
      });

      it('refuses one level more than maxDepth', async () => {
        const deep = { ...VALID_BODY, extra: JSON.parse('['.repeat(LIMITS.maxDepth) + ']'.repeat(LIMITS.maxDepth)) as unknown };
        expect(await poisonReason({ body: deep })).toBe('body is nested deeper than consumer.maxDepth (8)');
      });

      it.each(['{"orderId":', '', "{'orderId':'o-1'}", '{"orderId":"o-1",}', 'undefined'])(
        'refuses invalid JSON %j, quoting the parser',
        async (body) => {
          expect(await poisonReason({ body })).toMatch(/^body is not valid JSON: .+/);
        },
      );

      it.each([
        ['null', 'body is null, not a JSON object'],
        ['[{"orderId":"o-1"}]', 'body is an array, not a JSON object'],
        ['42', 'body is a number, not a JSON object'],
        ['"o-1"', 'body is a string, not a JSON object'],
        ['true', 'body is a boolean, not a JSON object'],
      ])('refuses the body %s, which is not an object', async (body, reason) => {
        expect(await poisonReason({ body })).toBe(reason);
      });
    });

    describe('prototype pollution', () => {
      it.each([
        ['{"__proto__":{"polluted":true},"orderId":"o-1"}', '"__proto__" at $'],
        ['{"orderId":"o-1","meta":{"a":{"__proto__":{"polluted":true}}}}', '"__proto__" at $.meta.a'],
        ['{"orderId":"o-1","lines":[{"sku":"a"},{"constructor":{"prototype":{}}}]}', '"constructor" at $.lines[1]'],
        ['{"orderId":"o-1","prototype":1}', '"prototype" at $'],
      ])('refuses %s', async (body, where) => {
        expect(await poisonReason({ body })).toBe(`body has the key ${where}, refused to prevent prototype pollution`);
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      });
    });

    describe('keys named like the methods of every object', () => {
      it.each([
        ['{"orderId":"o-1","valueOf":1}', '"valueOf" at $'],
        ['{"orderId":"o-1","meta":{"sale":3,"toString":"x"}}', '"toString" at $.meta'],
        ['{"orderId":"o-1","lines":[{"sku":"a"},{"sku":"b","isPrototypeOf":2}]}', '"isPrototypeOf" at $.lines[1]'],
        ['{"orderId":"o-1","meta":{"__defineSetter__":0}}', '"__defineSetter__" at $.meta'],
      ])('refuses %s, which class-transformer would rebuild without the key', async (body, where) => {
        expect(await poisonReason({ body })).toBe(
          `body has the key ${where}, a method name of every object: class-transformer would leave it out of the rebuilt event`,
        );
      });
    });

    describe('validation', () => {
      it('refuses a body that breaks the class-validator rules, naming the properties', async () => {
        const reason = await poisonReason({ body: { orderId: '', placedAt: '2026-11-26T06:00:00.000Z' } });
        expect(reason).toMatch(/^body fails the validation rules of OrderCreatedIntegrationEvent: /);
        expect(reason).toContain('orderId: orderId must be longer than or equal to 1 characters');
      });

      it('fails the attempt, not the message, when a custom rule throws: the message may be good once the rule\'s service is back', async () => {
        const decoded = await decode({}, handlerFor(EventWithThrowingRule));
        expect(decoded).toMatchObject({
          ok: false,
          reason: 'validating EventWithThrowingRule failed: the rule service is down',
          validationFailed: { messageId: 'msg-1', eventName: 'ordering.order-created', eventVersion: 2, error: new Error('the rule service is down') },
        });
      });

      it('refuses as poison a body on which a synchronous rule throws: it throws the same way on every attempt', async () => {
        const reason = await poisonReason({ body: { orderId: 42 }, headers: headersWith({ [MessageHeaders.EventVersion]: 4 }) }, handlerFor(EventWithBrittleRule));
        expect(reason).toMatch(/^validating EventWithBrittleRule threw: .*startsWith/);
      });

      it('fails the attempt when an async rule does not answer within the handler\'s timeout', async () => {
        const handler = { ...handlerFor(EventWithHangingRule), timeoutMs: 50 };
        const decoded = await decode({ headers: headersWith({ [MessageHeaders.EventVersion]: 3 }) }, handler);
        expect(decoded).toMatchObject({
          ok: false,
          validationFailed: { error: new Error("validating EventWithHangingRule took longer than the handler's timeoutMs (50 ms)") },
        });
      });

      it('refuses a date field that is not a date, naming it', async () => {
        expect(await poisonReason({ body: { orderId: 'o-1', placedAt: 'not a date' } })).toBe('body has an invalid date at $.placedAt');
      });

      it('refuses a missing required field', async () => {
        const reason = await poisonReason({ body: { placedAt: '2026-11-25T10:00:00.000Z' } });
        expect(reason).toContain('orderId: ');
        expect(reason).toContain('orderId must be a string');
      });

      it('refuses an invalid nested value', async () => {
        const reason = await poisonReason({ body: { ...VALID_BODY, lines: [{ sku: 'a', quantity: 0 }] } });
        expect(reason).toBe(
          'body fails the validation rules of OrderCreatedIntegrationEvent: lines: invalid nested value',
        );
      });

      it('refuses a body the event class cannot be built from', async () => {
        const handler = handlerFor(StrictConstructorEvent, 'OrderCancelledHandler');
        const headers = headersWith({
          [MessageHeaders.EventName]: 'ordering.order-cancelled',
          [MessageHeaders.EventVersion]: 1,
        });
        const reason = await poisonReason(
          { routingKey: 'ordering.order-cancelled', headers, body: { orderId: 'o-1' } },
          handler,
        );
        expect(reason).toMatch(/^body cannot be turned into StrictConstructorEvent: /);
      });
    });

    it('describes what a constructor or a rule threw, whatever it is (null, an object without a prototype), instead of throwing itself', async () => {
      const headers = headersWith({ [MessageHeaders.EventName]: 'ordering.order-cancelled', [MessageHeaders.EventVersion]: 2 });
      expect(await poisonReason({ routingKey: 'ordering.order-cancelled', headers, body: { orderId: 'o-1' } }, handlerFor(ThrowsNullWhenBuilt, 'Nulls'))).toBe(
        'body cannot be turned into ThrowsNullWhenBuilt: null',
      );
      const decoded = await decode({ headers: headersWith({ [MessageHeaders.EventVersion]: 5 }) }, handlerFor(EventWithBareRejection));
      expect(decoded).toMatchObject({ ok: false, reason: 'validating EventWithBareRejection failed: {}' });
    });

    it('checks the headers before reading the body', async () => {
      const reason = await poisonReason({
        body: Buffer.from([0xff]),
        headers: headersWith({ [MessageHeaders.EventVersion]: undefined }),
      });
      expect(reason).toBe('missing or malformed ie-event-version header');
    });
  });
});
