import { Injectable } from '@nestjs/common';
import { InjectTransactionHost, TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { Order } from './domain/order.aggregate';
import { OrderEntity } from './order.entity';

/** Loads and saves Order aggregates, in the ambient transaction of the ordering service. */
@Injectable()
export class OrdersRepository {
  constructor(@InjectTransactionHost('ordering') private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}

  async save(order: Order): Promise<void> {
    await this.txHost.tx.getRepository(OrderEntity).save({
      id: order.id,
      customerId: order.customerId,
      amountCents: order.amountCents,
      status: order.status,
      createdAt: order.createdAt,
      paidAt: order.paidAt,
    });
  }

  /** @param options.forUpdate lock the row until the transaction ends (PostgreSQL; SQLite has one writer anyway) */
  async find(id: string, options: { forUpdate?: boolean } = {}): Promise<Order | undefined> {
    const query = this.txHost.tx.getRepository(OrderEntity).createQueryBuilder('o').where('o.id = :id', { id });
    if (options.forUpdate && this.txHost.tx.connection.options.type === 'postgres') query.setLock('pessimistic_write');
    const row = await query.getOne();
    return row ? Order.restore(row) : undefined;
  }
}
