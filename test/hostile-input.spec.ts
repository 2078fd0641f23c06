import type { TestingModule } from '@nestjs/testing';
import { DeadLetterService, IntegrationEventConsumers } from 'nestjs-integration-events';
import { OrderCreatedRecorder } from './fixtures/order-events';
import { CapturingLogger } from './support/capturing-logger';
import { eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TcpProxy } from './support/tcp-proxy';
import { TestNamespace } from './support/test-namespace';
import { rabbitMqUrlVia, TEST_RABBITMQ_ADDRESS, TEST_RABBITMQ_CREDENTIALS } from './support/services';

/** A barrage of hostile messages against a live consumer (issue: bad input and security). */
describe('hostile input', () => {
  let ns: TestNamespace;
  let app: TestingModule;
  const queue = () => `${ns.serviceName}.OrderCreatedRecorder`;
  const valid = (orderId: string) => JSON.stringify({ orderId, placedAt: '2026-11-26T06:00:00.000Z' });

  beforeAll(async () => {
    ns = await TestNamespace.create();
    app = await startTestApp(ns, {
      providers: [OrderCreatedRecorder],
      options: { consumer: { retry: { initialDelayMs: 20, maxDelayMs: 40 } } },
    });
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  it('dead-letters every hostile message with its reason, keeps consuming, and handles the good ones around them', async () => {
    // A table whose "__proto__" field is bytes: amqplib makes them its prototype, so it passes for bytes.
    const fakeBytes = Object.defineProperty({}, '__proto__', { value: Buffer.from('ordering.order-created'), enumerable: true });
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    const hostile: Array<[string, string | Buffer, Record<string, unknown>, RegExp, (string | null)?]> = [
      ['invalid-json', '{"orderId": "x", ', {}, /not valid JSON/],
      ['null-body', 'null', {}, /is null, not a JSON object/],
      ['deep-nesting', deep, {}, /nested deeper than consumer.maxDepth \(64\)/],
      ['deep-object', `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`, {}, /nested deeper than consumer.maxDepth/],
      // Over the default limit of 1 MiB.
      ['too-big', JSON.stringify({ orderId: 'x', placedAt: '2026-11-26T06:00:00.000Z', padding: 'x'.repeat(1_100_000) }), {}, /exceeds consumer.maxBodyBytes \(1048576\)/],
      ['proto-key', '{"orderId":"x","placedAt":"2026-11-26T06:00:00.000Z","__proto__":{"polluted":true}}', {}, /"__proto__"/],
      ['nested-proto', '{"orderId":"x","placedAt":"2026-11-26T06:00:00.000Z","nested":{"__proto__":{"polluted":true}}}', {}, /"__proto__" at \$\.nested/],
      ['constructor-key', '{"orderId":"x","placedAt":"2026-11-26T06:00:00.000Z","constructor":{"prototype":{"polluted":true}}}', {}, /"constructor"/],
      ['invalid-utf8', Buffer.concat([Buffer.from('{"orderId":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), {}, /not valid UTF-8/],
      ['no-version', valid('x'), { 'ie-event-version': null }, /ie-event-version/],
      ['wrong-event', valid('x'), { 'ie-event-name': 'billing.invoice-sent' }, /is not the event of handler/],
      // Tables, which amqplib decodes into objects: one whose toString is not a function, one whose
      // "__proto__" field (void) takes its prototype away. Neither can be turned into a string.
      ['event-name-table', valid('x'), { 'ie-event-name': { toString: 'x' } }, /event \(a table\) is not the event of handler/],
      ['event-name-proto', valid('x'), { 'ie-event-name': JSON.parse('{"__proto__":null}') }, /event \(a table\) is not the event of handler/],
      ['event-name-fake-bytes', valid('x'), { 'ie-event-name': fakeBytes }, /event \(a table\) is not the event of handler/],
      ['bad-occurred-at', valid('x'), { 'ie-occurred-at': 'yesterday' }, /ie-occurred-at/],
      ['bad-version', valid('x'), { 'ie-event-version': 'one' }, /ie-event-version/],
      ['no-message-id', valid('x'), {}, /message_id/, null],
      // A double amqplib decodes but cannot encode again: the dead letter leaves it out rather than loop.
      ['double-attempt', 'null', { 'ie-attempt': { '!': 'double', value: -1e300 } }, /is null, not a JSON object/],
    ];
    const recorder = app.get(OrderCreatedRecorder);
    const goodIds: string[] = [];
    for (const [id, body, headers, , messageId] of hostile) {
      await ns.publishRaw('ordering.order-created', body, { messageId: messageId === null ? null : id, headers });
      const goodId = `good-after-${id}`;
      goodIds.push(goodId);
      await ns.publishRaw('ordering.order-created', valid(goodId), { messageId: goodId });
    }
    // Forged attempt counts are clamped, not trusted: these are well-formed and handled.
    const forged = [
      ['forged-negative', -3],
      ['forged-huge', 10 ** 9],
      ['forged-text', 'DROP TABLE'],
      ['forged-double', { '!': 'double', value: -1e300 }],
    ] as const;
    for (const [id, attempt] of forged) {
      await ns.publishRaw('ordering.order-created', valid(id), { messageId: id, headers: { 'ie-attempt': attempt } });
      goodIds.push(id);
    }
    // A header named "__proto__": amqplib makes it the headers object's prototype. Handled, with plain headers.
    await ns.publishRaw('ordering.order-created', valid('proto-header'), {
      messageId: 'proto-header',
      headers: JSON.parse('{"__proto__":{"ie-attempt":7,"tenant":"forged"},"tenant":"acme","nested":{"__proto__":{"a":1},"b":2},"listed":[{"__proto__":{"a":1},"c":3}]}'),
    });
    goodIds.push('proto-header');

    await eventually(() => expect(recorder.received.map((r) => r.context.messageId).sort()).toEqual([...goodIds].sort()), {
      timeoutMs: 20_000,
    });
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(hostile.length));
    // And one sent straight into the dead-letter queue, which no consumer cleaned up on the way.
    const straight = await (await ns.amqp()).createConfirmChannel();
    straight.sendToQueue(`${queue()}.dlq`, Buffer.from('{}'), { messageId: 'straight-fake-bytes', headers: { 'ie-event-name': fakeBytes } });
    await straight.waitForConfirms();
    await straight.close();
    // One hostile dead letter does not break the listing of its queue: its table header is named by its type.
    const listed = await app.get(DeadLetterService).list(`${queue()}.dlq`, hostile.length + 1);
    expect(listed.total).toBe(hostile.length + 1);
    expect(listed.messages.filter((m) => /^(event-name-|straight-)/.test(m.messageId ?? '')).map((m) => [m.messageId, m.eventName])).toEqual(
      expect.arrayContaining([
        ['event-name-table', '(a table)'],
        ['event-name-proto', '(a table)'],
        ['event-name-fake-bytes', '(a table)'],
        ['straight-fake-bytes', '(a table)'],
      ]),
    );
    const dead = await ns.drainQueue(`${queue()}.dlq`);
    for (const [id, , , reason, messageId] of hostile) {
      const found = dead.find((m) => (messageId === null ? m.properties.messageId === undefined : m.properties.messageId === id));
      expect(found?.properties.headers).toMatchObject({ 'ie-dead-letter-reason': 'poison' });
      expect(String(found?.properties.headers?.['ie-error-message'])).toMatch(reason);
    }
    const protoHeaders = recorder.received.find((r) => r.context.messageId === 'proto-header')!.context;
    expect(Object.getPrototypeOf(protoHeaders.headers)).toBe(Object.prototype);
    expect(protoHeaders.headers).toMatchObject({ tenant: 'acme', nested: { b: 2 } });
    expect(Object.getPrototypeOf(protoHeaders.headers.nested)).toBe(Object.prototype);
    expect(Object.getPrototypeOf((protoHeaders.headers.listed as object[])[0])).toBe(Object.prototype);
    expect(protoHeaders.headers['ie-attempt']).toBeUndefined();
    expect(protoHeaders.attempt).toBe(1);
    expect(app.get(IntegrationEventConsumers).status).toEqual({ handlers: 1, attached: 1 });
    expect(await ns.queueDepth(queue())).toBe(0);
    // No prototype was polluted on the way.
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(recorder.received.every((r) => !Object.prototype.hasOwnProperty.call(r.event, 'polluted'))).toBe(true);
  });
});

describe('credentials in logs', () => {
  let ns: TestNamespace;
  let proxy: TcpProxy;

  beforeAll(async () => {
    ns = await TestNamespace.create();
    proxy = await TcpProxy.create(TEST_RABBITMQ_ADDRESS);
  });

  afterAll(async () => {
    await proxy.stop();
    await ns.cleanup();
  });

  it('never logs the password of the broker URL, while unreachable, connecting or disconnected', async () => {
    const logger = new CapturingLogger();
    const app = await startTestApp(ns, {
      logger,
      providers: [OrderCreatedRecorder],
      options: {
        rabbitmq: { url: rabbitMqUrlVia(proxy.port, { search: '?x=s3cr3t-in-query' }), reconnectInitialDelayMs: 50, reconnectMaxDelayMs: 100 },
      },
    });
    try {
      await eventually(() => expect(logger.text).toMatch(/unreachable/));
      await proxy.accept();
      // Both connections (consuming, publishing) up, then both back after the cut: a close while one of
      // them is still opening would leave amqplib a connection that nobody listens to.
      for (const role of ['consuming', 'publishing']) {
        await eventually(() => expect(logger.text).toMatch(new RegExp(`Connected to amqp://${escapeRegExp(encodeURIComponent(TEST_RABBITMQ_CREDENTIALS.username))}:\\*\\*\\*@127\\.0\\.0\\.1\\S* \\(${role}`)));
      }
      proxy.cut();
      for (const role of ['consuming', 'publishing']) await eventually(() => expect(logger.text).toMatch(new RegExp(`Reconnected to \\S+ \\(${role}`)));
    } finally {
      await app.close();
    }
    // Neither as given nor as it appears in a URL (percent-encoded).
    expect(logger.text).not.toContain(`:${TEST_RABBITMQ_CREDENTIALS.password}@`);
    expect(logger.text).not.toContain(`:${encodeURIComponent(TEST_RABBITMQ_CREDENTIALS.password)}@`);
    expect(logger.lines.length).toBeGreaterThan(3);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
