/**
 * The testing kit's defaults, as the README's "Testing your code" states them: what a handler's context
 * gets from `deliver()` given no options (a new message id, the correlation id the message id, the
 * source service `'test'`), and `drain()` not waiting for outbox rows delayed into the future. SQLite in
 * memory and the in-process broker, the documented set-up for users' tests.
 */
import { Test, type TestingModule } from '@nestjs/testing';
import { DataSource } from 'typeorm';
import { IntegrationEventPublisher } from 'nestjs-integration-events';
import { IntegrationEventsTestingModule, IntegrationEventsTestKit } from 'nestjs-integration-events/testing';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { sqlitePersistence } from './support/sqlite-persistence';

describe('the testing kit\'s defaults', () => {
  let moduleRef: TestingModule;
  let kit: IntegrationEventsTestKit;
  let recorder: OrderCreatedRecorder;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [...sqlitePersistence(), IntegrationEventsTestingModule.forRoot({ serviceName: 'shipping' })],
      providers: [OrderCreatedRecorder],
    }).compile();
    moduleRef.useLogger(false);
    await moduleRef.init();
    kit = moduleRef.get(IntegrationEventsTestKit);
    recorder = moduleRef.get(OrderCreatedRecorder);
  });

  afterEach(async () => {
    await moduleRef?.close();
  });

  it('delivers with a new message id, the correlation id the message id and the source service \'test\' when given no options', async () => {
    const messageId = await kit.deliver(new OrderCreatedIntegrationEvent('no-options'));
    const other = await kit.deliver(new OrderCreatedIntegrationEvent('no-options-again'));
    await kit.drain();

    expect(messageId).not.toBe(other);
    expect(recorder.received.map(({ event }) => event.orderId).sort()).toEqual(['no-options', 'no-options-again']);
    const { context } = recorder.received.find(({ event }) => event.orderId === 'no-options')!;
    expect(context).toMatchObject({
      messageId,
      eventName: 'ordering.order-created',
      eventVersion: 1,
      sourceService: 'test',
      correlationId: messageId,
      causationId: undefined,
      attempt: 1,
      redelivered: false,
    });
    // As the headers say, not a fallback of the consumer's.
    expect(context.headers).toMatchObject({ 'ie-source-service': 'test', 'ie-correlation-id': messageId });
    expect(context.headers).not.toHaveProperty('ie-causation-id');
    const second = recorder.received.find(({ event }) => event.orderId === 'no-options-again')!.context;
    expect(second).toMatchObject({ messageId: other, correlationId: other, sourceService: 'test' });
  });

  it('does not wait in drain() for a row delayed into the future: the handler is not called, the row stays pending, and is delivered once due', async () => {
    const delayMs = 2_000;
    const publisher = moduleRef.get(IntegrationEventPublisher);
    const published = Date.now();
    const [messageId] = await publisher.publish(new OrderCreatedIntegrationEvent('later'), { standalone: true, delay: delayMs });

    // Well before the row is due: a drain that waited for it would time out here.
    await kit.drain({ timeoutMs: 1_000 });
    expect(Date.now() - published).toBeLessThan(delayMs);
    expect(recorder.received).toEqual([]);
    expect(kit.published).toEqual([]);
    const rows = (await moduleRef.get(DataSource).query('SELECT id, status, available_at FROM integration_events_outbox')) as Array<{
      id: string;
      status: string;
      available_at: number;
    }>;
    expect(rows).toEqual([{ id: messageId, status: 'pending', available_at: expect.any(Number) }]);
    expect(rows[0]!.available_at).toBeGreaterThan(Date.now());

    // Not lost: once due, the relay sends it and the handler gets it.
    await eventually(
      async () => {
        await kit.drain();
        expect(recorder.received.map(({ context }) => context.messageId)).toEqual([messageId]);
      },
      { timeoutMs: delayMs + 8_000, intervalMs: 100 },
    );
    expect(Date.now() - published).toBeGreaterThanOrEqual(delayMs);
  });
});
