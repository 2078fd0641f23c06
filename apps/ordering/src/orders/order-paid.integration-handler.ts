import { CommandBus } from '@nestjs/cqrs';
import {
  IntegrationEventHandler,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderPaidIntegrationEvent } from '../../../contracts/order-paid.integration-event';
import { OrderPaidCommand } from './commands/order-paid.command';

/** The seed's integration event handler: sends a command. */
@IntegrationEventHandler(OrderPaidIntegrationEvent, { queue: 'ordering.order-paid' })
export class OrderPaidIntegrationEventHandler implements IIntegrationEventHandler<OrderPaidIntegrationEvent> {
  constructor(private readonly commandBus: CommandBus) {}

  async handle(event: OrderPaidIntegrationEvent, _context: IntegrationEventContext): Promise<void> {
    await this.commandBus.execute(new OrderPaidCommand(event.orderId, event.paidAt));
  }
}
