import {
  IntegrationEventHandler,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from '../../../contracts/order-created.integration-event';
import { PaymentsService } from './payments.service';

/** An order was placed in ordering: take the payment. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'payments.order-created' })
export class OrderCreatedIntegrationEventHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(private readonly payments: PaymentsService) {}

  async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    await this.payments.charge(event.orderId, event.amountCents, context.correlationId);
  }
}
