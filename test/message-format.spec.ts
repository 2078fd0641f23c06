import type { TestingModule } from '@nestjs/testing';
import { TransactionHost } from '@nestjs-cls/transactional';
import { IntegrationEventPublisher } from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** A version 7 UUID (RFC 9562): the Unix time in ms, then random bits. */
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** The Unix time in ms in the first 48 bits of a UUID. */
const timeOf = (id: string): number => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);

/** Behaviour 4: the wire contract, read by a plain amqplib consumer as another service would. */
describe('message format on the wire', () => {
  let ns: TestNamespace;
  let app: TestingModule;

  beforeAll(async () => {
    ns = await TestNamespace.create();
    app = await startTestApp(ns, { options: { consumer: { enabled: false } } });
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  it('sends the event as JSON with the contract properties and headers', async () => {
    const probe = await ns.probe('#');
    const occurredAt = new Date('2026-11-26T06:30:00.123Z');
    const [id] = await app.get(TransactionHost).withTransaction(() =>
      app
        .get(IntegrationEventPublisher)
        .publish(new OrderCreatedIntegrationEvent('o-1', new Date('2026-11-25T10:00:00.000Z')), {
          occurredAt,
          correlationId: 'flow-42',
          headers: { tenant: 'acme', priority: 3, urgent: true },
        }),
    );
    const [message] = await eventually(() => {
      expect(probe.messages).toHaveLength(1);
      return probe.messages;
    });
    const { fields, properties, content } = message!;

    expect(fields.exchange).toBe(ns.exchange);
    expect(fields.routingKey).toBe('ordering.order-created');
    expect(JSON.parse(content.toString('utf8'))).toEqual({ orderId: 'o-1', placedAt: '2026-11-25T10:00:00.000Z' });
    expect(properties).toMatchObject({
      messageId: id,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      deliveryMode: 2,
      type: 'ordering.order-created',
      appId: ns.serviceName,
      correlationId: 'flow-42',
      timestamp: Math.floor(occurredAt.getTime() / 1000),
    });
    expect(id).toMatch(UUID_V7);
    expect(properties.headers).toEqual({
      'ie-event-name': 'ordering.order-created',
      'ie-event-version': 1,
      'ie-occurred-at': '2026-11-26T06:30:00.123Z',
      'ie-source-service': ns.serviceName,
      'ie-correlation-id': 'flow-42',
      tenant: 'acme',
      priority: 3,
      urgent: true,
    });
  });

  it('uses the message id as correlation id when none is given, and keeps the id on re-publish', async () => {
    const probe = await ns.probe('ordering.order-created');
    const [id] = await app
      .get(IntegrationEventPublisher)
      .publish(new OrderCreatedIntegrationEvent('o-2'), { standalone: true });
    await eventually(() => expect(probe.messages).toHaveLength(1));
    expect(probe.messages[0]!.properties.headers?.['ie-correlation-id']).toBe(id);

    // An operator (or a crash before the mark) makes the relay send the row again: same message id. The
    // row is reset once marked (a mark can come up to 50 ms after the message reached the queue).
    await eventually(async () => expect((await ns.outboxRows()).find((row) => row.id === id)?.status).toBe('sent'));
    const db = await ns.sql();
    await db.query(`UPDATE ${ns.outboxTable} SET status = 'pending', sent_at = NULL WHERE id = $1`, [id]);
    await eventually(() => expect(probe.messages).toHaveLength(2), { timeoutMs: 5_000 });
    expect(probe.messages[1]!.properties.messageId).toBe(id);
  });

  it('gives each message of one relay batch its own headers, whatever names the others had', async () => {
    // One transaction: its rows reach the relay together and go out in one batch, through the one
    // headers object the publisher refills for every message (ReusedHeadersTable).
    const probe = await ns.probe('ordering.order-created');
    const calls: Array<{ orderId: string; correlationId: string; headers?: Record<string, string | number | boolean> }> = [
      { orderId: 'h-1', correlationId: 'flow-h1', headers: { tenant: 'acme', priority: 3 } },
      { orderId: 'h-2', correlationId: 'flow-h2', headers: { urgent: false } },
      { orderId: 'h-3', correlationId: 'flow-h3' },
      { orderId: 'h-4', correlationId: 'flow-h4', headers: { tenant: 'globex', region: 'eu-west' } },
    ];
    const ids = await app.get(TransactionHost).withTransaction(async () => {
      const publisher = app.get(IntegrationEventPublisher);
      const written: string[] = [];
      for (const { orderId, correlationId, headers } of calls) {
        written.push(...(await publisher.publish(new OrderCreatedIntegrationEvent(orderId), { correlationId, headers })));
      }
      return written;
    });
    await eventually(() => expect(probe.messages).toHaveLength(calls.length));

    const byId = new Map(probe.messages.map((message) => [message.properties.messageId as string, message]));
    calls.forEach(({ orderId, correlationId, headers }, index) => {
      const message = byId.get(ids[index]!)!;
      expect(JSON.parse(message.content.toString('utf8'))).toMatchObject({ orderId });
      expect(message.properties.headers).toEqual({
        'ie-event-name': 'ordering.order-created',
        'ie-event-version': 1,
        'ie-occurred-at': expect.any(String),
        'ie-source-service': ns.serviceName,
        'ie-correlation-id': correlationId,
        ...headers,
      });
    });
  });

  it('gives messages time-ordered ids: each carries when publish() made it, and later ones sort after earlier ones', async () => {
    const probe = await ns.probe('ordering.order-created');
    const publisher = app.get(IntegrationEventPublisher);
    const made: Array<{ id: string; before: number; after: number }> = [];
    for (let i = 0; i < 5; i++) {
      const before = Date.now();
      const [id] = await publisher.publish(new OrderCreatedIntegrationEvent(`t-${i}`), { standalone: true });
      made.push({ id: id!, before, after: Date.now() });
      // A later millisecond for the next one, so their order is decided by time, not by chance.
      await eventually(() => expect(Date.now()).toBeGreaterThan(made[i]!.after));
    }
    await eventually(() => expect(probe.messages).toHaveLength(5));

    for (const { id, before, after } of made) {
      expect(id).toMatch(UUID_V7);
      expect(timeOf(id)).toBeGreaterThanOrEqual(before);
      expect(timeOf(id)).toBeLessThanOrEqual(after);
    }
    const ids = made.map(({ id }) => id);
    expect([...ids].sort()).toEqual(ids);
    // PostgreSQL orders them the same way (uuid compares byte by byte), so the outbox's key grows at its end.
    const db = await ns.sql();
    const { rows } = await db.query<{ id: string }>(`SELECT id::text FROM ${ns.outboxTable} WHERE id = ANY($1::uuid[]) ORDER BY id`, [ids]);
    expect(rows.map((row) => row.id)).toEqual(ids);
    expect(probe.messages.map((message) => message.properties.messageId)).toEqual(expect.arrayContaining(ids));
  });
});
