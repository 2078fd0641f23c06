import { CommandHandler, EventPublisher, type ICommandHandler } from '@nestjs/cqrs';
import { Transactional } from '@nestjs-cls/transactional';
import { OrdersRepository } from '../orders.repository';

/** Payments confirmed the order's payment (the seed's OrderPaidCommand). */
export class OrderPaidCommand {
  constructor(
    readonly orderId: string,
    readonly paidAt: Date,
  ) {}
}

@CommandHandler(OrderPaidCommand)
export class OrderPaidHandler implements ICommandHandler<OrderPaidCommand> {
  constructor(
    private readonly orders: OrdersRepository,
    private readonly eventPublisher: EventPublisher,
  ) {}

  @Transactional()
  async execute({ orderId, paidAt }: OrderPaidCommand): Promise<void> {
    const order = await this.orders.find(orderId, { forUpdate: true });
    if (!order) throw new Error(`Order ${orderId} does not exist`);
    this.eventPublisher.mergeObjectContext(order).markPaid(paidAt);
    await this.orders.save(order);
    order.commit();
  }
}
