import { dirname, join } from 'node:path';
import { deadLetterHeaders, requeuedHeaders, retryCopyHeaders, smallerCopyHeaders } from './failure-headers';

/** amqplib's own header-table encoder (its package exports only its API, so it is loaded by path). */
const { encodeTable } = require(join(dirname(require.resolve('amqplib')), 'lib', 'codec.js')) as {
  encodeTable(buffer: Buffer, table: Record<string, unknown>, offset: number): number;
};

/** What amqplib does with a copy's header table: throws when it cannot encode it. */
function encodes(headers: Record<string, unknown>): boolean {
  try {
    encodeTable(Buffer.alloc(65_536), headers, 0);
    return true;
  } catch {
    return false;
  }
}

describe('copy headers', () => {
  it("leave out another publisher's CC and BCC, which would send the copy to the queues they name too", () => {
    const sent = { 'ie-event-name': 'payments.x', CC: ['audit'], BCC: ['spy'], cc: 'kept', 'x-death': [{}] };
    const retry = {
      action: 'retry',
      attempt: 1,
      nextAttempt: 2,
      delayMs: 10,
      eventName: 'payments.x',
      failure: { name: 'Error', message: 'boom', failedAt: new Date() },
    } as unknown as Parameters<typeof retryCopyHeaders>[1];
    const retried = retryCopyHeaders(sent, retry);
    expect(retried).not.toHaveProperty('CC');
    expect(retried).not.toHaveProperty('BCC');
    expect(retried).not.toHaveProperty('x-death');
    expect(retried).toHaveProperty('cc', 'kept');
    const deadLetter = {
      action: 'dead-letter',
      reason: 'max-attempts',
      attempts: 3,
      eventName: 'payments.x',
      failure: { name: 'Error', message: 'boom', failedAt: new Date() },
    } as unknown as Parameters<typeof deadLetterHeaders>[1];
    const dead = deadLetterHeaders(sent, deadLetter, { name: 'XHandler', queue: 'payments.XHandler' });
    expect(dead).not.toHaveProperty('CC');
    expect(dead).not.toHaveProperty('BCC');
    expect(requeuedHeaders(sent)).toEqual({ 'ie-event-name': 'payments.x', cc: 'kept' });
  });
});

describe('smallerCopyHeaders', () => {
  it('leaves out, in its last form, every library header amqplib would fail on, and names them', () => {
    const headers = {
      'ie-event-name': 'ordering.order-created',
      'ie-attempt': Number.NaN,
      'ie-weight': -1e300,
      'ie-big-fraction': 2 ** 50 + 0.5,
      'ie-fraction': 0.25,
      'ie-nested': { '!': 'not a type' },
      [`ie-${'\uFFFD'.repeat(90)}`]: 'a name grown past 255 bytes',
      'ie-flag': true,
      tenant: 'acme',
    };
    expect(encodes(headers)).toBe(false);
    const forms = smallerCopyHeaders(headers);
    const last = forms[forms.length - 1]!;
    expect(last).toEqual({
      'ie-event-name': 'ordering.order-created',
      'ie-fraction': 0.25,
      'ie-flag': true,
      'ie-dropped-headers': `tenant,ie-attempt,ie-weight,ie-big-fraction,ie-nested,ie-${'\uFFFD'.repeat(90)}`,
    });
    expect(encodes(last)).toBe(true);
    // The forms before keep what they can: the application's headers go only in the second.
    expect(forms[0]).toHaveProperty('tenant', 'acme');
    expect(forms[1]).not.toHaveProperty('tenant');
  });

  it('keeps its last form within amqplib\'s table, however large the library headers another client sent', () => {
    const headers = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`ie-huge-${i}`, '€'.repeat(8_000)]));
    expect(encodes(headers)).toBe(false);
    const last = smallerCopyHeaders(headers).at(-1)!;
    expect(Object.keys(last)).toEqual(['ie-huge-0', 'ie-huge-1', 'ie-dropped-headers']);
    expect(last['ie-dropped-headers']).toBe('ie-huge-2,ie-huge-3');
    expect(encodes(last)).toBe(true);
  });

  it('keeps, in its last form, the failure and contract headers before the other ie-* headers another client sent', () => {
    // About 65 KB of a sender's own small ie-* headers, arrived before the copy's failure headers.
    const sent = Object.fromEntries(Array.from({ length: 2_600 }, (_, i) => [`ie-f-${String(i).padStart(4, '0')}`, '0123456789']));
    const disposition = {
      action: 'dead-letter',
      reason: 'non-retryable',
      attempts: 1,
      messageId: 'm-1',
      eventName: 'payments.x',
      eventVersion: 1,
      failure: { name: 'Error', message: 'no', stack: undefined, failedAt: new Date('2026-11-27T06:00:00.000Z') },
    } as unknown as Parameters<typeof deadLetterHeaders>[1];
    const last = smallerCopyHeaders(deadLetterHeaders(sent, disposition, { name: 'XHandler', queue: 'payments.XHandler' })).at(-1)!;
    expect(last).toMatchObject({
      'ie-dead-letter-reason': 'non-retryable',
      'ie-attempts': 1,
      'ie-queue': 'payments.XHandler',
      'ie-handler': 'XHandler',
      'ie-error-message': 'no',
      'ie-event-name': 'payments.x',
    });
    expect(last['ie-dropped-headers']).toMatch(/^ie-f-\d{4}(,ie-f-\d{4})*/);
    expect(encodes(last)).toBe(true);
    // On a retry copy, the attempt (a dropped one would start the count again) and the event's name.
    const retry = {
      action: 'retry',
      nextAttempt: 2,
      eventName: 'payments.x',
      failure: disposition.failure,
    } as unknown as Parameters<typeof retryCopyHeaders>[1];
    expect(smallerCopyHeaders(retryCopyHeaders(sent, retry)).at(-1)).toMatchObject({ 'ie-attempt': 2, 'ie-event-name': 'payments.x' });
  });
});

describe('deadLetterHeaders', () => {
  const handler = { name: 'OrderCreatedHandler', queue: 'ordering.OrderCreatedHandler' };
  const earlier = {
    'ie-event-name': 'ordering.order-created',
    'ie-dead-letter-reason': 'max-attempts',
    'ie-error-name': 'TypeError',
    'ie-error-message': 'x is undefined',
    'ie-error-stack': 'TypeError: x is undefined\n    at handle (order.handler.ts:12:3)',
  };
  const deadLetter = (stack: string | undefined) =>
    ({
      action: 'dead-letter',
      reason: 'poison',
      attempts: 0,
      failure: { name: 'PoisonMessage', message: 'the body is not JSON', stack, failedAt: new Date('2026-11-27T06:00:00.000Z') },
      messageId: 'm-1',
      eventName: 'ordering.order-created',
      eventVersion: 1,
    }) as const;

  it('drops the stack of an earlier failure when the new one has none (a dead letter moved back by hand, then poison)', () => {
    const headers = deadLetterHeaders(earlier, deadLetter(undefined), handler);
    expect(headers).toMatchObject({ 'ie-dead-letter-reason': 'poison', 'ie-error-name': 'PoisonMessage', 'ie-error-message': 'the body is not JSON' });
    expect(headers).not.toHaveProperty('ie-error-stack');
  });

  it('carries the new failure\'s stack in place of the earlier one', () => {
    const headers = deadLetterHeaders(earlier, deadLetter('PoisonMessage: the body is not JSON\n    at decode'), handler);
    expect(headers['ie-error-stack']).toBe('PoisonMessage: the body is not JSON\n    at decode');
  });
});

describe('retryCopyHeaders', () => {
  /** A first attempt's transient failure at `failedAt`, retried in a second. */
  const firstRetry = (failedAt: Date) => ({
    action: 'retry' as const,
    attempt: 1,
    nextAttempt: 2,
    delayMs: 1_000,
    failure: { name: 'Error', message: 'transient', stack: undefined, failedAt },
    eventName: 'ordering.order-created',
  });

  it('keeps an earlier first failure only in the form the library writes, not free text V8 would parse as a date', () => {
    const failedAt = new Date('2026-11-27T06:00:00.000Z');
    const retry = (first: unknown) => retryCopyHeaders({ 'ie-first-failure-at': first }, firstRetry(failedAt))['ie-first-failure-at'];
    const forged = `Jan 1 2020 (${'x'.repeat(60_000)})`;
    expect(Number.isNaN(Date.parse(forged))).toBe(false);
    expect(retry(forged)).toBe('2026-11-27T06:00:00.000Z');
    expect(retry('2026-11-26T06:00:00.000+01:00')).toBe('2026-11-26T06:00:00.000+01:00');
    expect(retry('2026-13-45T99:00:00Z')).toBe('2026-11-27T06:00:00.000Z');
  });

  it('leaves out what only a dead letter carries, when one moved back by hand fails again', () => {
    const movedBack = {
      'ie-event-name': 'ordering.order-created',
      tenant: 'acme',
      'ie-first-failure-at': '2026-11-26T06:00:00.000Z',
      'ie-dead-letter-reason': 'max-attempts',
      'ie-attempts': 10,
      'ie-error-name': 'TypeError',
      'ie-error-message': 'x is undefined',
      'ie-error-stack': 'TypeError: x is undefined',
      'ie-handler': 'OrderCreatedHandler',
      'ie-queue': 'ordering.OrderCreatedHandler',
      'ie-dead-lettered-at': '2026-11-26T07:00:00.000Z',
    };
    const failedAt = new Date('2026-11-27T06:00:00.000Z');
    const headers = retryCopyHeaders(movedBack, firstRetry(failedAt));
    expect(headers).toEqual({
      'ie-event-name': 'ordering.order-created',
      tenant: 'acme',
      'ie-attempt': 2,
      // The first failure stays the first, across the dead letter.
      'ie-first-failure-at': '2026-11-26T06:00:00.000Z',
      'ie-last-failure-at': '2026-11-27T06:00:00.000Z',
      'ie-last-error': 'Error: transient',
    });
  });
});
