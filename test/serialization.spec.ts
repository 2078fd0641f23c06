import type { TestingModule } from '@nestjs/testing';
import { TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import {
  IntegrationEvent,
  IntegrationEventDefinitionError,
  IntegrationEventPublisher,
  IntegrationEventSerializationError,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

@IntegrationEvent({ name: 'catalog.price-changed', version: 2 })
class PriceChangedIntegrationEvent {
  constructor(
    readonly sku: string,
    readonly price: unknown,
  ) {}
}

class UndecoratedEvent {
  constructor(readonly id: string) {}
}

/** Behaviour 2: only what survives JSON unchanged is published; a refusal writes nothing at all. */
describe('publish() refuses events that are not simple JSON objects', () => {
  let ns: TestNamespace;
  let app: TestingModule;
  let publisher: IntegrationEventPublisher;
  let txHost: TransactionHost;

  beforeAll(async () => {
    ns = await TestNamespace.create();
    app = await startTestApp(ns, { options: { consumer: { enabled: false } } });
    publisher = app.get(IntegrationEventPublisher);
    txHost = app.get(TransactionHost);
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  const circular: Record<string, unknown> = { name: 'loop' };
  circular.self = circular;

  it.each([
    ['a BigInt', 10n, '$.price', /BigInt/],
    ['a Map', new Map([['EUR', 10]]), '$.price', /Map/],
    ['a Set', new Set([1]), '$.price', /Set/],
    ['NaN', Number.NaN, '$.price', /NaN.*null/],
    ['Infinity', Number.POSITIVE_INFINITY, '$.price', /Infinity/],
    ['a function', () => 10, '$.price', /function/],
    ['a circular reference', circular, '$.price.self', /circular/],
    ['an invalid Date', new Date('nope'), '$.price', /invalid Date/],
    ['a class instance with no JSON form', { amount: new (class Money {})() }, '$.price.amount', /no own fields/],
    ['a value with a custom toJSON', new URL('https://example.com'), '$.price', /toJSON/],
  ])('refuses %s, naming where it is, and writes nothing', async (_label, price, path, reason) => {
    const before = (await ns.outboxRows()).length;
    const attempt = txHost.withTransaction(() =>
      publisher.publish([new OrderCreatedIntegrationEvent('fine'), new PriceChangedIntegrationEvent('sku-1', price)]),
    );
    await expect(attempt).rejects.toBeInstanceOf(IntegrationEventSerializationError);
    const error = (await attempt.catch((e: unknown) => e)) as IntegrationEventSerializationError;
    expect(error.eventName).toBe('catalog.price-changed');
    expect(error.path).toBe(path);
    expect(error.reason).toMatch(reason);
    expect(error.message).toContain('Nothing was written to the outbox');
    expect(await ns.outboxRows()).toHaveLength(before);
  });

  it('refuses a class without @IntegrationEvent', async () => {
    const before = (await ns.outboxRows()).length;
    await expect(
      txHost.withTransaction(() => publisher.publish(new UndecoratedEvent('x'))),
    ).rejects.toThrow(IntegrationEventDefinitionError);
    await expect(txHost.withTransaction(() => publisher.publish(new UndecoratedEvent('x')))).rejects.toThrow(
      /UndecoratedEvent is not an integration event: add @IntegrationEvent/,
    );
    expect(await ns.outboxRows()).toHaveLength(before);
  });

  it('accepts nested plain data and Dates, stored exactly as it will be sent', async () => {
    const price = { amount: 12.5, currency: 'EUR', tiers: [{ from: 1, amount: 12.5 }], since: new Date('2026-01-01T00:00:00Z'), note: undefined };
    const [id] = await txHost.withTransaction(() => publisher.publish(new PriceChangedIntegrationEvent('sku-2', price)));
    const db = await ns.sql();
    const { rows } = await db.query(`SELECT payload, event_name, event_version FROM ${ns.outboxTable} WHERE id = $1`, [id]);
    expect(rows).toEqual([
      {
        event_name: 'catalog.price-changed',
        event_version: 2,
        payload:
          '{"sku":"sku-2","price":{"amount":12.5,"currency":"EUR","tiers":[{"from":1,"amount":12.5}],"since":"2026-01-01T00:00:00.000Z"}}',
      },
    ]);
  });
});

@IntegrationEvent({ name: 'documents.document-attached', version: 1 })
class DocumentAttachedIntegrationEvent {
  constructor(readonly text: string) {}
}

/**
 * An event whose JSON body is exactly `bytes` bytes of UTF-8. With `wide`, the text is two-byte
 * characters (`é`) as far as they go: far fewer characters than bytes, so a limit counted in characters
 * would let it through.
 */
function eventOfBytes(bytes: number, { wide = false } = {}): DocumentAttachedIntegrationEvent {
  const room = bytes - Buffer.byteLength(JSON.stringify(new DocumentAttachedIntegrationEvent('')));
  const text = wide ? 'é'.repeat(Math.floor(room / 2)) + 'x'.repeat(room % 2) : 'x'.repeat(room);
  const event = new DocumentAttachedIntegrationEvent(text);
  expect(Buffer.byteLength(JSON.stringify(event))).toBe(bytes);
  return event;
}

/** Behaviour 2: the size of the JSON body, in bytes, is checked before anything is written. */
describe('publish() refuses an event larger than outbox.maxPayloadBytes', () => {
  const apps: TestingModule[] = [];
  const namespaces: TestNamespace[] = [];

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const ns of namespaces.splice(0)) await ns.cleanup();
  });

  /** An app whose relay publishes (no consumers), a probe on the event, and a business table. */
  const start = async (outbox: { maxPayloadBytes?: number } = {}) => {
    const ns = await TestNamespace.create();
    namespaces.push(ns);
    const probe = await ns.probe('documents.document-attached');
    const app = await startTestApp(ns, { options: { outbox, consumer: { enabled: false } } });
    apps.push(app);
    const db = await ns.sql();
    await db.query(`CREATE TABLE "${ns.schema}".documents (id text PRIMARY KEY)`);
    const txHost = app.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
    return {
      ns,
      probe,
      txHost,
      publisher: app.get(IntegrationEventPublisher),
      saveDocument: (id: string) => txHost.tx.query(`INSERT INTO "${ns.schema}".documents (id) VALUES ($1)`, [id]),
      documents: async () => (await db.query(`SELECT id FROM "${ns.schema}".documents ORDER BY id`)).rows.map((row: { id: string }) => row.id),
    };
  };

  const refusal = (attempt: Promise<unknown>) => attempt.then(
    () => {
      throw new Error('publish() accepted an event over the limit');
    },
    (error: unknown) => error,
  );

  it('with maxPayloadBytes 1024, refuses 1025 bytes (counted in bytes, not characters) and writes nothing', async () => {
    const { ns, txHost, publisher } = await start({ maxPayloadBytes: 1024 });
    for (const event of [eventOfBytes(1025), eventOfBytes(1025, { wide: true })]) {
      const error = await refusal(txHost.withTransaction(() => publisher.publish([new OrderCreatedIntegrationEvent('fine'), event])));
      expect(error).toBeInstanceOf(IntegrationEventSerializationError);
      expect(error).toMatchObject({ eventName: 'documents.document-attached', path: '$' });
      expect((error as Error).message).toContain('is 1025 bytes of JSON, more than outbox.maxPayloadBytes (1024)');
      expect((error as Error).message).toContain('Nothing was written to the outbox');
    }
    // The wide one is 1025 bytes but 518 characters of JSON: the limit is on bytes.
    expect(JSON.stringify(eventOfBytes(1025, { wide: true }))).toHaveLength(518);
    expect(await ns.outboxRows()).toHaveLength(0);
  });

  it('leaves the transaction sound: propagated, it rolls back the business write; caught, the business write commits with a smaller event', async () => {
    const { ns, probe, txHost, publisher, saveDocument, documents } = await start({ maxPayloadBytes: 1024 });

    // Propagated: the caller's transaction rolls back, as for any error.
    const propagated = txHost.withTransaction(async () => {
      await saveDocument('doc-rolled-back');
      await publisher.publish(eventOfBytes(1025));
    });
    await expect(propagated).rejects.toBeInstanceOf(IntegrationEventSerializationError);
    expect(await documents()).toEqual([]);
    expect(await ns.outboxRows()).toHaveLength(0);

    // Caught: publish() threw before any statement, so the transaction is not aborted and commits (no
    // TransactionAbortedError), with the reference the error message advises instead of the data.
    const [referenceId] = await txHost.withTransaction(async () => {
      await saveDocument('doc-committed');
      await expect(publisher.publish(eventOfBytes(1025))).rejects.toBeInstanceOf(IntegrationEventSerializationError);
      return publisher.publish(new DocumentAttachedIntegrationEvent('s3://documents/doc-committed'));
    });
    expect(await documents()).toEqual(['doc-committed']);
    expect((await ns.outboxRows()).map((row) => row.id)).toEqual([referenceId]);
    await eventually(() => expect(probe.messages.map((m) => m.properties.messageId)).toEqual([referenceId]));
    expect(JSON.parse(probe.messages[0]!.content.toString('utf8'))).toEqual({ text: 's3://documents/doc-committed' });
  });

  it('with maxPayloadBytes 1024, writes and delivers an event of exactly 1024 bytes', async () => {
    const { ns, probe, txHost, publisher } = await start({ maxPayloadBytes: 1024 });
    const ids = await txHost.withTransaction(() => publisher.publish([eventOfBytes(1024), eventOfBytes(1023, { wide: true })]));
    expect((await ns.outboxRows()).map((row) => row.id)).toEqual(ids);
    await eventually(() => expect(probe.messages.map((m) => m.properties.messageId).sort()).toEqual([...ids].sort()));
    const sizes = Object.fromEntries(probe.messages.map((m) => [m.properties.messageId as string, m.content.length]));
    expect(sizes).toEqual({ [ids[0]!]: 1024, [ids[1]!]: 1023 });
  });

  it('by default, refuses 262,145 bytes and writes and delivers 262,144', async () => {
    const { ns, probe, txHost, publisher } = await start();
    const error = await refusal(txHost.withTransaction(() => publisher.publish(eventOfBytes(262_145))));
    expect(error).toBeInstanceOf(IntegrationEventSerializationError);
    expect((error as Error).message).toContain('is 262145 bytes of JSON, more than outbox.maxPayloadBytes (262144)');
    expect(await ns.outboxRows()).toHaveLength(0);

    const [id] = await txHost.withTransaction(() => publisher.publish(eventOfBytes(262_144)));
    expect((await ns.outboxRows()).map((row) => row.id)).toEqual([id]);
    await eventually(() => expect(probe.messages.map((m) => m.properties.messageId)).toEqual([id]));
    expect(probe.messages[0]!.content.length).toBe(262_144);
  });
});
