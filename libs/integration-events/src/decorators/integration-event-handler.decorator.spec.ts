import 'reflect-metadata';
import { InvalidIntegrationEventHandlerError } from '../errors/invalid-integration-event-handler.error';
import { IntegrationEvent } from './integration-event.decorator';
import { IntegrationEventHandler, IntegrationEventHandlerDiscovery } from './integration-event-handler.decorator';

@IntegrationEvent({ name: 'test.first-happened', version: 1 })
class FirstHappened {}

@IntegrationEvent({ name: 'test.second-happened', version: 1 })
class SecondHappened {}

describe('@IntegrationEventHandler', () => {
  it('refuses a second decorator on one class, which would silently replace the first', () => {
    class BothEvents {}
    IntegrationEventHandler(FirstHappened)(BothEvents);
    expect(() => IntegrationEventHandler(SecondHappened)(BothEvents)).toThrow(InvalidIntegrationEventHandlerError);
    expect(() => IntegrationEventHandler(SecondHappened)(BothEvents)).toThrow(
      'it has two @IntegrationEventHandler decorators (FirstHappened and SecondHappened)',
    );
    expect(Reflect.getMetadata(IntegrationEventHandlerDiscovery.KEY, BothEvents)).toMatchObject({ event: FirstHappened });
  });

  it('lets a subclass of a handler class be a handler of its own event', () => {
    class Base {}
    IntegrationEventHandler(FirstHappened)(Base);
    class Derived extends Base {}
    IntegrationEventHandler(SecondHappened)(Derived);
    expect(Reflect.getMetadata(IntegrationEventHandlerDiscovery.KEY, Derived)).toMatchObject({ event: SecondHappened });
    expect(Reflect.getMetadata(IntegrationEventHandlerDiscovery.KEY, Base)).toMatchObject({ event: FirstHappened });
  });
});
