import { randomUUID } from 'node:crypto';
import { Injectable, NotFoundException } from '@nestjs/common';
import { Transactional, TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { IntegrationEventPublisher } from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent } from '../../../contracts/order-created.integration-event';
import { Order } from './order.entity';

@Injectable()
export class OrdersService {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly integrationEvents: IntegrationEventPublisher,
  ) {}

  /** Saves the order and its OrderCreated event in one transaction: both commit, or neither. */
  @Transactional()
  async create(customerId: string, amountCents: number): Promise<Order> {
    const order = this.txHost.tx.getRepository(Order).create({
      id: randomUUID(),
      customerId,
      amountCents,
      status: 'created',
      paidAt: null,
    });
    await this.txHost.tx.getRepository(Order).save(order);
    await this.integrationEvents.publish(
      new OrderCreatedIntegrationEvent(order.id, order.customerId, order.amountCents, order.createdAt),
    );
    return order;
  }

  /** Marks the order paid; a second call for the same order changes nothing. */
  @Transactional()
  async markPaid(orderId: string, paidAt: Date): Promise<void> {
    await this.txHost.tx
      .getRepository(Order)
      .createQueryBuilder()
      .update()
      .set({ status: 'paid', paidAt })
      .where('id = :orderId AND status = :created', { orderId, created: 'created' })
      .execute();
  }

  async get(id: string): Promise<Order> {
    const order = await this.txHost.tx.getRepository(Order).findOneBy({ id });
    if (!order) throw new NotFoundException(`Order ${id} not found`);
    return order;
  }
}
