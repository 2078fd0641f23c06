/**
 * How handlers are found: however the application provides a handler class (a factory, a subclass in its
 * place, an alias), it is consumed once, under its class's name, against the real RabbitMQ.
 */
import type { Provider } from '@nestjs/common';
import type { TestingModule } from '@nestjs/testing';
import {
  IntegrationEventConsumers,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  InvalidIntegrationEventHandlerError,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** A decorated base that is never provided itself, and two undecorated subclasses: two handlers. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
abstract class OrderCreatedNotifier implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly ids: string[] = [];
  handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): void {
    this.ids.push(context.messageId);
  }
}
class EmailNotifier extends OrderCreatedNotifier {}
class SmsNotifier extends OrderCreatedNotifier {}

/** A test double put in the handler's place, as `overrideProvider(...).useClass(...)` does: not decorated itself. */
class RecorderSpy extends OrderCreatedRecorder {}

describe('handler discovery', () => {
  let ns: TestNamespace;
  let app: TestingModule | undefined;

  beforeEach(async () => {
    ns = await TestNamespace.create();
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    await ns.cleanup();
  });

  /** Boots with `providers`, publishes one event, and returns the handlers found and the instance that handled it. */
  const bootAndDeliver = async (providers: Provider[]) => {
    app = await startTestApp(ns, { providers });
    const handlers = app.get(IntegrationEventConsumers).handlers.map((handler) => ({ name: handler.name, queue: handler.queue }));
    await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('found'), { standalone: true });
    const recorder = app.get(OrderCreatedRecorder);
    await eventually(() => expect(recorder.received.map((r) => r.event.orderId)).toEqual(['found']));
    return { handlers, recorder };
  };

  it('names a handler made by a factory after its class, not after the factory', async () => {
    const { handlers } = await bootAndDeliver([{ provide: OrderCreatedRecorder, useFactory: () => new OrderCreatedRecorder() }]);
    expect(handlers).toEqual([{ name: 'OrderCreatedRecorder', queue: `${ns.serviceName}.OrderCreatedRecorder` }]);
  });

  it('finds an undecorated subclass provided in the handler\'s place, and keeps the handler\'s name and queue', async () => {
    const { handlers, recorder } = await bootAndDeliver([{ provide: OrderCreatedRecorder, useClass: RecorderSpy }]);
    expect(recorder).toBeInstanceOf(RecorderSpy);
    // Swapping the implementation does not move the handler to a new queue (nor restart its inbox).
    expect(handlers).toEqual([{ name: 'OrderCreatedRecorder', queue: `${ns.serviceName}.OrderCreatedRecorder` }]);
  });

  it('refuses a decorated handler and an undecorated subclass of it as two providers, which would consume the event twice', async () => {
    const outcome = await startTestApp(ns, { providers: [OrderCreatedRecorder, { provide: 'spy', useClass: RecorderSpy }] }).then(
      async (booted) => {
        await booted.close();
        return 'booted';
      },
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(InvalidIntegrationEventHandlerError);
    expect((outcome as Error).message).toMatch(/RecorderSpy.*OrderCreatedRecorder|OrderCreatedRecorder.*RecorderSpy/);
    expect((outcome as Error).message).toContain('both would consume OrderCreatedIntegrationEvent');
  });

  it('consumes two undecorated subclasses of a decorated base that is not provided, each on its own queue', async () => {
    const { handlers } = await bootAndDeliver([OrderCreatedRecorder, EmailNotifier, SmsNotifier]);
    expect(handlers.map((handler) => handler.queue).sort()).toEqual(
      ['EmailNotifier', 'OrderCreatedRecorder', 'SmsNotifier'].map((name) => `${ns.serviceName}.${name}`),
    );
    await eventually(() => expect([app!.get(EmailNotifier).ids.length, app!.get(SmsNotifier).ids.length]).toEqual([1, 1]));
  });

  it.each([
    ['after', [RecorderSpy, { provide: OrderCreatedRecorder, useExisting: RecorderSpy }]],
    ['before', [{ provide: OrderCreatedRecorder, useExisting: RecorderSpy }, RecorderSpy]],
  ])('keeps the handler\'s name for a subclass provided as itself and aliased in its place %s it, whatever the order', async (_order, providers) => {
    const { handlers, recorder } = await bootAndDeliver(providers as Provider[]);
    expect(recorder).toBeInstanceOf(RecorderSpy);
    expect(handlers).toEqual([{ name: 'OrderCreatedRecorder', queue: `${ns.serviceName}.OrderCreatedRecorder` }]);
  });

  it.each([
    ['after', [RecorderSpy, { provide: OrderCreatedRecorder, useClass: RecorderSpy }]],
    ['before', [{ provide: OrderCreatedRecorder, useClass: RecorderSpy }, RecorderSpy]],
  ])('refuses a subclass provided as itself and, as a second instance, in the handler\'s place %s it', async (_order, providers) => {
    const outcome = await startTestApp(ns, { providers: providers as Provider[] }).then(
      async (booted) => {
        await booted.close();
        return 'booted';
      },
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(InvalidIntegrationEventHandlerError);
    expect((outcome as Error).message).toMatch(/RecorderSpy is provided twice, as two instances named (RecorderSpy and OrderCreatedRecorder|OrderCreatedRecorder and RecorderSpy)/);
    expect((outcome as Error).message).toContain('both would consume OrderCreatedIntegrationEvent, each on a queue of its own');
  });

  it('boots beside a provider whose token is a function without a prototype (an arrow function)', async () => {
    const arrowToken = (() => undefined) as unknown as Function;
    class Clock {}
    const { handlers } = await bootAndDeliver([OrderCreatedRecorder, { provide: arrowToken, useClass: Clock }]);
    expect(handlers).toEqual([{ name: 'OrderCreatedRecorder', queue: `${ns.serviceName}.OrderCreatedRecorder` }]);
    expect(app!.get(arrowToken)).toBeInstanceOf(Clock);
  });

  it('consumes a handler that is also provided under an alias once', async () => {
    const { handlers } = await bootAndDeliver([OrderCreatedRecorder, { provide: 'recorder-alias', useExisting: OrderCreatedRecorder }]);
    expect(handlers).toEqual([{ name: 'OrderCreatedRecorder', queue: `${ns.serviceName}.OrderCreatedRecorder` }]);
  });
});
