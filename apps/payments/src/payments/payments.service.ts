import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { Transactional, TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { IntegrationEventPublisher } from 'nestjs-integration-events';
import { OrderPaidIntegrationEvent } from '../../../contracts/order-paid.integration-event';
import { Payment } from './payment.entity';

@Injectable()
export class PaymentsService {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly integrationEvents: IntegrationEventPublisher,
  ) {}

  /**
   * Records the order's payment and publishes OrderPaid, in one transaction. A redelivered
   * OrderCreated finds the payment already there and does nothing.
   */
  @Transactional()
  async charge(orderId: string, amountCents: number, correlationId: string | undefined): Promise<void> {
    const inserted = await this.txHost.tx
      .createQueryBuilder()
      .insert()
      .into(Payment)
      .values({ id: randomUUID(), orderId, amountCents })
      .orIgnore()
      .returning(['id', 'paidAt'])
      .execute();
    const row = inserted.raw[0] as { id: string; paid_at: Date } | undefined;
    if (!row) return; // Already paid: this delivery is a duplicate.
    await this.integrationEvents.publish(new OrderPaidIntegrationEvent(orderId, row.id, row.paid_at), { correlationId });
  }

  count(): Promise<number> {
    return this.txHost.tx.getRepository(Payment).count();
  }
}
