import { randomUUID } from 'node:crypto';
import { Controller, type INestApplication, Post, Req } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TransactionHost } from '@nestjs-cls/transactional';
import {
  IntegrationEvent,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  IntegrationEventsModule,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { infrastructureImports, testOptions, trackHandlerQueues } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

@IntegrationEvent({ name: 'payments.payment-taken', version: 1 })
class PaymentTakenIntegrationEvent {
  constructor(readonly orderId: string) {}
}

@Controller('orders')
class OrdersController {
  constructor(
    private readonly txHost: TransactionHost,
    private readonly publisher: IntegrationEventPublisher,
  ) {}

  @Post()
  async create(@Req() _request: unknown): Promise<{ messageId: string }> {
    const [messageId] = await this.txHost.withTransaction(() =>
      this.publisher.publish(new OrderCreatedIntegrationEvent(randomUUID())),
    );
    return { messageId: messageId! };
  }
}

/** Stands for another service: handling OrderCreated publishes the next event of the flow. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class TakePayment implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly contexts: IntegrationEventContext[] = [];
  constructor(
    private readonly txHost: TransactionHost,
    private readonly publisher: IntegrationEventPublisher,
  ) {}

  async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.contexts.push(context);
    await this.txHost.withTransaction(() => this.publisher.publish(new PaymentTakenIntegrationEvent(event.orderId)));
  }
}

/** Item 3: correlation and causation ids, from the HTTP request through two hops. */
describe('correlation and causation', () => {
  let ns: TestNamespace;
  let app: INestApplication;
  let baseUrl: string;
  let messages: Awaited<ReturnType<TestNamespace['probe']>>['messages'];

  beforeAll(async () => {
    ns = await TestNamespace.create();
    messages = (await ns.probe('#')).messages;
    const moduleRef = await Test.createTestingModule({
      imports: [...infrastructureImports(ns), IntegrationEventsModule.forRoot(testOptions(ns))],
      controllers: [OrdersController],
      providers: [TakePayment],
    }).compile();
    moduleRef.useLogger(['error']);
    app = moduleRef.createNestApplication();
    await app.listen(0, '127.0.0.1');
    baseUrl = await app.getUrl();
    trackHandlerQueues(ns, app);
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  const flow = (correlationId: string) =>
    messages.filter((m) => m.properties.headers?.['ie-correlation-id'] === correlationId);

  it('carries the request\'s x-correlation-id and request id, then the handled message\'s ids, down the flow', async () => {
    const response = await fetch(`${baseUrl}/orders`, {
      method: 'POST',
      headers: { 'x-correlation-id': 'flow-42', 'x-request-id': 'request-7' },
    });
    expect(response.headers.get('x-correlation-id')).toBe('flow-42');
    const { messageId } = (await response.json()) as { messageId: string };

    await eventually(() => expect(flow('flow-42')).toHaveLength(2));
    const [created, taken] = [
      flow('flow-42').find((m) => m.fields.routingKey === 'ordering.order-created')!,
      flow('flow-42').find((m) => m.fields.routingKey === 'payments.payment-taken')!,
    ];
    expect(created.properties.messageId).toBe(messageId);
    expect(created.properties.headers).toMatchObject({ 'ie-correlation-id': 'flow-42', 'ie-causation-id': 'request-7' });
    expect(taken.properties.headers).toMatchObject({ 'ie-correlation-id': 'flow-42', 'ie-causation-id': messageId });
    const context = app.get(TakePayment).contexts.find((c) => c.messageId === messageId)!;
    expect(context).toMatchObject({ correlationId: 'flow-42', causationId: 'request-7' });
  });

  it('starts a new flow for a request without ids, and says which in the response', async () => {
    const response = await fetch(`${baseUrl}/orders`, { method: 'POST' });
    const correlationId = response.headers.get('x-correlation-id');
    expect(correlationId).toMatch(/^[0-9a-f-]{36}$/);
    await eventually(() => expect(flow(correlationId!)).toHaveLength(2));
    const created = flow(correlationId!).find((m) => m.fields.routingKey === 'ordering.order-created')!;
    expect(created.properties.headers?.['ie-causation-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('ignores a malformed incoming correlation id', async () => {
    const response = await fetch(`${baseUrl}/orders`, { method: 'POST', headers: { 'x-correlation-id': 'has spaces in it' } });
    expect(response.headers.get('x-correlation-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('continues the flow under the message\'s own id when another publisher sent an id it could not send on', async () => {
    // 300 characters: no AMQP correlation_id (255 bytes at most) could carry it, so a follow-up event
    // that kept it could never be published.
    const tooLong = 'c'.repeat(300);
    const messageId = await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'foreign-flow' }), {
      headers: { 'ie-correlation-id': tooLong, 'ie-causation-id': 'has spaces in it' },
    });
    // The follow-up event went out (not stuck in the outbox), in a flow named after the handled message.
    await eventually(() => expect(flow(messageId!).map((m) => m.fields.routingKey)).toEqual(['payments.payment-taken']));
    expect(flow(messageId!)[0]!.properties.headers).toMatchObject({ 'ie-causation-id': messageId });
    const context = app.get(TakePayment).contexts.find((c) => c.messageId === messageId)!;
    expect(context.correlationId).toBeUndefined();
    expect(context.causationId).toBeUndefined();
    expect(context.headers['ie-correlation-id']).toBe(tooLong);
  });

  it('lets an event published outside any request or handler start its own flow', async () => {
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('standalone'), { standalone: true });
    await eventually(() => expect(flow(id!)).toHaveLength(2));
    const created = flow(id!).find((m) => m.properties.messageId === id)!;
    expect(created.properties.headers).not.toHaveProperty('ie-causation-id');
  });
});
