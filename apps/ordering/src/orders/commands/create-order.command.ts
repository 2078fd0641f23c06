import { randomUUID } from 'node:crypto';
import { CommandHandler, EventPublisher, type ICommandHandler } from '@nestjs/cqrs';
import { Transactional } from '@nestjs-cls/transactional';
import { Order } from '../domain/order.aggregate';
import { OrdersRepository } from '../orders.repository';

export class CreateOrderCommand {
  constructor(
    readonly customerId: string,
    readonly amountCents: number,
  ) {}
}

/**
 * Places the order. The aggregate's OrderCreatedDomainEvent is handled before this transaction commits
 * (the library's cqrs bridge): its handler writes OrderCreatedIntegrationEvent to the outbox in the
 * same transaction, and a handler that throws takes the order with it.
 */
@CommandHandler(CreateOrderCommand)
export class CreateOrderHandler implements ICommandHandler<CreateOrderCommand, Order> {
  constructor(
    private readonly orders: OrdersRepository,
    private readonly eventPublisher: EventPublisher,
  ) {}

  @Transactional('ordering')
  async execute({ customerId, amountCents }: CreateOrderCommand): Promise<Order> {
    const order = this.eventPublisher.mergeObjectContext(Order.place(randomUUID(), customerId, amountCents, new Date()));
    await this.orders.save(order);
    order.commit();
    return order;
  }
}
