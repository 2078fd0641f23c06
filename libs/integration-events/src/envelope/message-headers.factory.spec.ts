import { runInNewContext } from 'node:vm';
import { IntegrationEventsError } from '../errors/integration-events.error';
import { InvalidPublishOptionsError } from '../errors/invalid-publish-options.error';
import { buildMessageHeaders, validateCorrelationId, type ContractHeaderValues } from './message-headers.factory';
import { MessageHeaders } from './message-headers';
import type { MessageHeadersRecord } from './outgoing-message';

const CONTRACT: ContractHeaderValues = {
  eventName: 'ordering.order-created',
  eventVersion: 2,
  occurredAt: new Date('2026-11-26T06:00:00.000Z'),
  sourceService: 'ordering',
  correlationId: 'corr-123',
};

const CONTRACT_HEADERS = {
  'ie-event-name': 'ordering.order-created',
  'ie-event-version': 2,
  'ie-occurred-at': '2026-11-26T06:00:00.000Z',
  'ie-source-service': 'ordering',
  'ie-correlation-id': 'corr-123',
};

/** Runs `action`, expecting an InvalidPublishOptionsError, and returns it. */
function refusal(action: () => unknown): InvalidPublishOptionsError {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(InvalidPublishOptionsError);
  return thrown as InvalidPublishOptionsError;
}

const headersRefusal = (headers: unknown): InvalidPublishOptionsError =>
  refusal(() => buildMessageHeaders(CONTRACT, headers as MessageHeadersRecord));

describe('buildMessageHeaders', () => {
  describe('contract headers', () => {
    it('writes the five ie-* contract headers when there are no application headers', () => {
      expect(buildMessageHeaders(CONTRACT, undefined)).toStrictEqual(CONTRACT_HEADERS);
      expect(buildMessageHeaders(CONTRACT, {})).toStrictEqual(CONTRACT_HEADERS);
    });

    it('uses the names of MessageHeaders, the causation id only when there is one', () => {
      const contractHeaders = [
        MessageHeaders.EventName,
        MessageHeaders.EventVersion,
        MessageHeaders.OccurredAt,
        MessageHeaders.SourceService,
        MessageHeaders.CorrelationId,
        MessageHeaders.CausationId,
      ];
      expect(Object.keys(buildMessageHeaders({ ...CONTRACT, causationId: 'cause-1' }, undefined)).sort()).toStrictEqual(
        contractHeaders.slice().sort(),
      );
      expect(buildMessageHeaders({ ...CONTRACT, causationId: 'cause-1' }, undefined)[MessageHeaders.CausationId]).toBe('cause-1');
      expect(buildMessageHeaders(CONTRACT, undefined)).not.toHaveProperty(MessageHeaders.CausationId);
    });

    it('sends occurredAt as an ISO 8601 string in UTC', () => {
      const headers = buildMessageHeaders({ ...CONTRACT, occurredAt: new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6)) }, undefined);
      expect(headers[MessageHeaders.OccurredAt]).toBe('2026-01-02T03:04:05.006Z');
    });

    it('keeps the application headers beside the contract headers', () => {
      expect(buildMessageHeaders(CONTRACT, { tenant: 'acme', priority: 3, replay: false })).toStrictEqual({
        tenant: 'acme',
        priority: 3,
        replay: false,
        ...CONTRACT_HEADERS,
      });
    });

    it.each([
      'ie-event-name',
      'IE-EVENT-NAME',
      'Ie-Event-Version',
      'ie-occurred-at',
      'ie-source-service',
      'ie-correlation-id',
    ])('cannot be overridden by an application header %j', (name) => {
      const error = headersRefusal({ [name]: 'forged' });
      expect(error.option).toBe(`headers.${name}`);
      expect(error.message).toContain('are reserved');
    });
  });

  describe('application header names', () => {
    it.each(['ie-custom', 'IE-custom', 'Ie-Custom', 'x-death', 'X-Death', 'x-match', 'X-'])(
      'refuses the reserved prefix in %j, whatever its case',
      (name) => {
        const error = headersRefusal({ [name]: 'v' });
        expect(error).toBeInstanceOf(IntegrationEventsError);
        expect(error.option).toBe(`headers.${name}`);
        expect(error.message).toBe(
          `Invalid publish() option "headers.${name}": names starting with "ie-" or "x-" are reserved ` +
            "(the library's contract headers and RabbitMQ's own).",
        );
      },
    );

    it.each(['CC', 'BCC'])('refuses %j, which RabbitMQ reads as more routing keys (and closes the channel over)', (name) => {
      const error = headersRefusal({ [name]: 'ops' });
      expect(error.option).toBe(`headers.${name}`);
      expect(error.message).toBe(
        `Invalid publish() option "headers.${name}": RabbitMQ reads the headers "CC" and "BCC" as more routing keys of the message ` +
          '(and refuses it unless they are arrays); use another name.',
      );
    });

    it.each(['iex', 'ie_custom', 'xray', 'x_custom', 'tenant', 'Tenant-Id', 'trace.id', '0', 'a'.repeat(128), 'cc', 'Bcc'])(
      'accepts %j',
      (name) => {
        expect(buildMessageHeaders(CONTRACT, { [name]: 'v' })[name]).toBe('v');
      },
    );

    it.each(['', '-tenant', '.tenant', '_tenant', 'tenant id', 'tenant:id', 'tenant/id', 'ténant', 'tenant\n', 'a'.repeat(129)])(
      'refuses the malformed name %j',
      (name) => {
        const error = headersRefusal({ [name]: 'v' });
        expect(error.option).toBe(`headers.${name}`);
        expect(error.message).toContain(
          'header names are 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit.',
        );
      },
    );

    it('refuses a "__proto__" header (as JSON.parse creates it)', () => {
      const headers = JSON.parse('{"__proto__": "polluted"}') as MessageHeadersRecord;
      const error = headersRefusal(headers);
      expect(error.option).toBe('headers.__proto__');
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });
  });

  describe('application header values', () => {
    it('accepts strings up to 4096 characters, finite numbers and booleans', () => {
      const headers = { long: 'v'.repeat(4_096), empty: '', int: -7, float: 1.25, yes: true, no: false };
      expect(buildMessageHeaders(CONTRACT, headers)).toMatchObject(headers);
    });

    it('accepts the numbers AMQP carries at their edges, and paired surrogates (emoji)', () => {
      const headers = {
        minLong: -(2 ** 63),
        bigInteger: 2 ** 62,
        beyondLong: 2 ** 64, // sent as a double
        fraction: 2 ** 50 - 0.5,
        micros: 1_790_000_000_000_000, // an integer: fine
        emoji: 'ok \u{1F600}',
      };
      expect(buildMessageHeaders(CONTRACT, headers)).toMatchObject(headers);
    });

    it.each<[string, unknown]>([
      ['a string over 4096 characters', 'v'.repeat(4_097)],
      ['NaN', Number.NaN],
      ['Infinity', Number.POSITIVE_INFINITY],
      ['null', null],
      ['undefined', undefined],
      ['an object', { nested: 1 }],
      ['an array', ['a']],
      ['a Date', new Date(0)],
      ['a BigInt', 1n],
      ['a Buffer', Buffer.from('x')],
      // amqplib encodes numbers from 2^50 up as 64-bit integers: a fraction there, or below -2^63, throws.
      ['a fraction from 2^50 up', 2 ** 50 + 0.5],
      ['a microsecond clock reading with a fraction', 1_790_000_000_000_000.5],
      ['an integer below -2^63', -(2 ** 64)],
      // PostgreSQL's jsonb refuses NUL; an unpaired surrogate has no UTF-8 form.
      ['a string with NUL', 'a\u0000b'],
      ['a string with an unpaired high surrogate', 'a\uD83D'],
      ['a string with an unpaired low surrogate', '\uDE00b'],
    ])('refuses %s', (_case, value) => {
      const error = headersRefusal({ tenant: value });
      expect(error.option).toBe('headers.tenant');
      expect(error.message).toBe(
        'Invalid publish() option "headers.tenant": values are strings (at most 4096 characters, no NUL or unpaired surrogate), ' +
          'booleans, or numbers AMQP carries: integers from -2^63, fractions below 2^50 in magnitude.',
      );
    });
  });

  describe('the headers object', () => {
    it('accepts 32 application headers', () => {
      const headers = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`h${i}`, i]));
      expect(Object.keys(buildMessageHeaders(CONTRACT, headers))).toHaveLength(32 + 5);
    });

    it('accepts headers of up to 32 KiB in all, names included, and refuses more', () => {
      // Seven of 4,096 ASCII characters and one of 4,080: 32,768 bytes with the names' 16.
      const atLimit: MessageHeadersRecord = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`h${i}`, 'v'.repeat(i === 7 ? 4_080 : 4_096)]));
      expect(Object.keys(buildMessageHeaders(CONTRACT, atLimit))).toHaveLength(8 + 5);
      const error = headersRefusal({ ...atLimit, h7: 'v'.repeat(4_081) });
      expect(error.option).toBe('headers');
      expect(error.message).toMatch(/they take 32769 bytes .*at most 32768/);
      // Characters outside ASCII count by their UTF-8 bytes: 4,096 three-byte characters are 12 KiB.
      const wide = Object.fromEntries(Array.from({ length: 3 }, (_, i) => [`w${i}`, '€'.repeat(4_096)]));
      expect(headersRefusal(wide).message).toMatch(/they take 36870 bytes/);
    });

    it('refuses 33 application headers', () => {
      const headers = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`h${i}`, i]));
      const error = headersRefusal(headers);
      expect(error.option).toBe('headers');
      expect(error.message).toBe('Invalid publish() option "headers": pass at most 32 headers.');
    });

    it.each<[string, unknown]>([
      ['null', null],
      ['an array', [['tenant', 'acme']]],
      ['a string', 'tenant=acme'],
    ])('refuses %s instead of an object', (_case, headers) => {
      const error = headersRefusal(headers);
      expect(error.option).toBe('headers');
      expect(error.message).toBe('Invalid publish() option "headers": pass an object of header names to values.');
    });

    it.each<[string, unknown, string]>([
      ['a Map', new Map([['tenant', 'acme']]), 'a Map'],
      ['a Set', new Set(['tenant']), 'a Set'],
      ['a Map of another realm', runInNewContext("new Map([['tenant', 'acme']])"), 'a Map'],
      ['fetch Headers', new Headers({ tenant: 'acme' }), 'a Headers'],
      ['a String object', new String('ab'), 'a String'],
      ['a Date', new Date(0), 'a Date'],
      [
        'a class instance keeping its values in private fields',
        new (class TenantHeaders {
          readonly #values = { tenant: 'acme' };
          value(name: 'tenant'): string {
            return this.#values[name];
          }
        })(),
        'a TenantHeaders instance without fields of its own, whose contents are not read',
      ],
      [
        'a class instance with a getter',
        new (class TenantHeaders {
          get tenant(): string {
            return 'acme';
          }
        })(),
        'a TenantHeaders instance with a getter ("tenant"), whose values are not read',
      ],
    ])('refuses %s, whose entries it would not see', (_case, headers, kind) => {
      const error = headersRefusal(headers);
      expect(error.option).toBe('headers');
      expect(error.message).toBe(`Invalid publish() option "headers": pass a plain object of header names to values, not ${kind}.`);
    });

    it.each<[string, MessageHeadersRecord]>([
      ['an object without a prototype', Object.assign(Object.create(null) as MessageHeadersRecord, { tenant: 'acme' })],
      ['an object of another realm', runInNewContext("({ tenant: 'acme' })") as MessageHeadersRecord],
      ['a class instance with own fields only', new (class TenantHeaders { readonly tenant = 'acme'; })() as unknown as MessageHeadersRecord],
    ])('takes %s', (_case, headers) => {
      expect(buildMessageHeaders(CONTRACT, headers)).toMatchObject({ tenant: 'acme' });
    });

    it('does not modify the headers it was given', () => {
      const headers: MessageHeadersRecord = { tenant: 'acme' };
      const built = buildMessageHeaders(CONTRACT, headers);
      expect(headers).toStrictEqual({ tenant: 'acme' });
      expect(built).not.toBe(headers);
    });
  });
});

describe('validateCorrelationId', () => {
  it.each(['c', 'corr-123', '0f8fad5b-d9cb-469f-a165-70867728950e', '!~{}[]', 'x'.repeat(200)])('accepts %j', (id) => {
    expect(validateCorrelationId(id)).toBe(id);
  });

  it.each<[string, unknown]>([
    ['an empty string', ''],
    ['a string with a space', 'corr 123'],
    ['a string with a tab', 'corr\t123'],
    ['a string with a newline', 'corr-123\n'],
    ['non-ASCII characters', 'corr-é'],
    ['over 200 characters', 'x'.repeat(201)],
    ['a number', 123],
    ['undefined', undefined],
    ['null', null],
  ])('refuses %s, naming the option', (_case, value) => {
    const error = refusal(() => validateCorrelationId(value));
    expect(error.option).toBe('correlationId');
    expect(error.message).toBe(
      'Invalid publish() option "correlationId": use 1-200 printable ASCII characters without spaces.',
    );
  });

  it('names the option it is told to', () => {
    expect(refusal(() => validateCorrelationId('a b', 'context.correlationId')).option).toBe('context.correlationId');
  });
});
