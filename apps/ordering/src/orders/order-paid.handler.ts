import {
  IntegrationEventHandler,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderPaidIntegrationEvent } from '../../../contracts/order-paid.integration-event';
import { OrdersService } from './orders.service';

/** Payments took the money: mark the order paid. */
@IntegrationEventHandler(OrderPaidIntegrationEvent, { queue: 'ordering.order-paid' })
export class OrderPaidIntegrationEventHandler implements IIntegrationEventHandler<OrderPaidIntegrationEvent> {
  constructor(private readonly orders: OrdersService) {}

  async handle(event: OrderPaidIntegrationEvent, _context: IntegrationEventContext): Promise<void> {
    await this.orders.markPaid(event.orderId, event.paidAt);
  }
}
