import type { TestingModule } from '@nestjs/testing';
import { OrderCreatedRecorder } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** Poison input skips the retries: dead-lettered on the first try, and the queue keeps flowing. */
describe('poison messages', () => {
  let ns: TestNamespace;
  let app: TestingModule;
  const dlq = () => `${ns.serviceName}.OrderCreatedRecorder.dlq`;
  const valid = (orderId: string) => JSON.stringify({ orderId, placedAt: '2026-11-26T06:00:00.000Z' });

  beforeAll(async () => {
    ns = await TestNamespace.create();
    app = await startTestApp(ns, { providers: [OrderCreatedRecorder] });
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  it.each([
    ['a body that is not JSON', 'not-json', '{"orderId":', {}, /not valid JSON/],
    ['a body that is not an object', 'not-object', '[1,2,3]', {}, /is an array, not a JSON object/],
    ['a null body', 'null-body', 'null', {}, /is null, not a JSON object/],
    ['a body failing the event class\'s validation rules', 'invalid', JSON.stringify({ orderId: '', placedAt: '2026-11-26T06:00:00.000Z' }), {}, /fails the validation rules of OrderCreatedIntegrationEvent: orderId/],
    ['an unknown event version', 'version-2', '{"orderId":"o","placedAt":"2026-11-26T06:00:00.000Z"}', { 'ie-event-version': 2 }, /unknown version 2 of "ordering.order-created"; handler OrderCreatedRecorder knows version 1/],
    ['a missing version header', 'no-version', '{"orderId":"o","placedAt":"2026-11-26T06:00:00.000Z"}', { 'ie-event-version': undefined }, /missing or malformed ie-event-version/],
    ['a __proto__ key', 'proto', '{"orderId":"o","placedAt":"2026-11-26T06:00:00.000Z","__proto__":{"admin":true}}', {}, /"__proto__" at \$/],
  ])('dead-letters %s at once, without calling the handler, and the next message is handled', async (_label, messageId, body, headers, reason) => {
    const recorder = app.get(OrderCreatedRecorder);
    recorder.received.length = 0;
    await ns.publishRaw('ordering.order-created', body, { messageId, headers });
    await ns.publishRaw('ordering.order-created', valid(`after-${messageId}`), { messageId: `after-${messageId}` });
    await eventually(() => expect(recorder.received.map((r) => r.context.messageId)).toEqual([`after-${messageId}`]));
    await eventually(async () => expect(await ns.queueDepth(dlq())).toBe(1));
    const [dead] = await ns.drainQueue(dlq());
    expect(dead!.properties.messageId).toBe(messageId);
    expect(dead!.content.toString('utf8')).toBe(body);
    expect(dead!.properties.headers).toMatchObject({ 'ie-dead-letter-reason': 'poison', 'ie-attempts': 0, 'ie-error-name': 'PoisonMessage' });
    expect(dead!.properties.headers?.['ie-error-message']).toMatch(reason);
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });
});
