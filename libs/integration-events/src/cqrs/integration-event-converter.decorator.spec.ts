import 'reflect-metadata';
import { InvalidIntegrationEventConverterError } from '../errors/invalid-integration-event-converter.error';
import { IntegrationEventConverter, IntegrationEventConverterDiscovery } from './integration-event-converter.decorator';

class OrderPaidDomainEvent {}
class OrderRefundedDomainEvent {}

describe('@IntegrationEventConverter', () => {
  it('refuses a second decorator on one class, which would silently replace the first and leave its domain event unconverted', () => {
    class PaymentsConverter {}
    IntegrationEventConverter(OrderRefundedDomainEvent)(PaymentsConverter);
    const second = () => IntegrationEventConverter(OrderPaidDomainEvent)(PaymentsConverter);
    expect(second).toThrow(InvalidIntegrationEventConverterError);
    expect(second).toThrow(
      'it has two @IntegrationEventConverter decorators (OrderRefundedDomainEvent and OrderPaidDomainEvent). A class converts one domain event class',
    );
    expect(Reflect.getMetadata(IntegrationEventConverterDiscovery.KEY, PaymentsConverter)).toEqual({ domainEvent: OrderRefundedDomainEvent });
  });

  it('lets a subclass of a converter class convert a domain event of its own', () => {
    class Base {}
    IntegrationEventConverter(OrderPaidDomainEvent)(Base);
    class Derived extends Base {}
    IntegrationEventConverter(OrderRefundedDomainEvent)(Derived);
    expect(Reflect.getMetadata(IntegrationEventConverterDiscovery.KEY, Derived)).toEqual({ domainEvent: OrderRefundedDomainEvent });
    expect(Reflect.getMetadata(IntegrationEventConverterDiscovery.KEY, Base)).toEqual({ domainEvent: OrderPaidDomainEvent });
  });
});
