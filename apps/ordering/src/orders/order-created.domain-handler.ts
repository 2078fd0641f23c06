import { EventsHandler, type IEventHandler } from '@nestjs/cqrs';
import { IntegrationEventPublisher } from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from '../../../contracts/order-created.integration-event';
import { OrderCreatedDomainEvent } from './domain/order-created.domain-event';

/** The seed's domain-event handler: turns the domain event into an integration event, in the transaction. */
@EventsHandler(OrderCreatedDomainEvent)
export class OrderCreatedDomainEventHandler implements IEventHandler<OrderCreatedDomainEvent> {
  constructor(private readonly integrationEventPublisher: IntegrationEventPublisher) {}

  async handle(event: OrderCreatedDomainEvent): Promise<void> {
    await this.integrationEventPublisher.publish(
      new OrderCreatedIntegrationEvent(event.orderId, event.customerId, event.amountCents, event.placedAt),
    );
  }
}
