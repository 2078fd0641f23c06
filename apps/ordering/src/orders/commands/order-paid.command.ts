import { CommandHandler, EventPublisher, type ICommandHandler } from '@nestjs/cqrs';
import { InjectTransactionHost, Transactional, TransactionHost } from '@nestjs-cls/transactional';
import { NonRetryableError } from 'nestjs-integration-events';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { OrderPaidLogEntry } from '../order-paid-log.entity';
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
    @InjectTransactionHost('ordering') private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
  ) {}

  @Transactional('ordering')
  async execute({ orderId, paidAt }: OrderPaidCommand): Promise<void> {
    // Audit log, used by the fault-injection suite (chaos/) to prove the inbox works: one row per committed
    // execution (markPaid() is idempotent, so the order alone would not show a second one).
    await this.txHost.tx.getRepository(OrderPaidLogEntry).insert({ orderId, handledBy: process.pid });
    const order = await this.orders.find(orderId, { forUpdate: true });
    // The order was committed before its OrderCreated was published: a retry cannot make it appear.
    if (!order) throw new NonRetryableError(`Order ${orderId} does not exist`);
    this.eventPublisher.mergeObjectContext(order).markPaid(paidAt);
    await this.orders.save(order);
    order.commit();
  }
}
