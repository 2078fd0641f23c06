import { CommandBus } from '@nestjs/cqrs';
import {
  IntegrationEventHandler,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from '../../../contracts/order-created.integration-event';
import { RecordPaymentCommand } from './record-payment.command';

/** An order was placed in ordering: take the payment. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'payments.order-created' })
export class OrderCreatedIntegrationEventHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(private readonly commandBus: CommandBus) {}

  async handle(event: OrderCreatedIntegrationEvent, _context: IntegrationEventContext): Promise<void> {
    await this.commandBus.execute(new RecordPaymentCommand(event.orderId, event.amountCents));
  }
}
