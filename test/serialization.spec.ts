import type { TestingModule } from '@nestjs/testing';
import { TransactionHost } from '@nestjs-cls/transactional';
import {
  IntegrationEvent,
  IntegrationEventDefinitionError,
  IntegrationEventPublisher,
  IntegrationEventSerializationError,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
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
