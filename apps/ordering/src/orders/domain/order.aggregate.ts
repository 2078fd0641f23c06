import { AggregateRoot } from '@nestjs/cqrs';
import type { OrderStatus } from '../order.entity';
import { OrderCreatedDomainEvent } from './order-created.domain-event';
import { OrderPaidDomainEvent } from './order-paid.domain-event';

/** The Order aggregate: its state changes raise domain events, published when the handler commits it. */
export class Order extends AggregateRoot {
  private constructor(
    readonly id: string,
    readonly customerId: string,
    readonly amountCents: number,
    private _status: OrderStatus,
    readonly createdAt: Date,
    private _paidAt: Date | null,
  ) {
    super();
  }

  static place(id: string, customerId: string, amountCents: number, now: Date): Order {
    const order = new Order(id, customerId, amountCents, 'created', now, null);
    order.apply(new OrderCreatedDomainEvent(id, customerId, amountCents, now));
    return order;
  }

  static restore(state: { id: string; customerId: string; amountCents: number; status: OrderStatus; createdAt: Date; paidAt: Date | null }): Order {
    return new Order(state.id, state.customerId, state.amountCents, state.status, state.createdAt, state.paidAt);
  }

  get status(): OrderStatus {
    return this._status;
  }

  get paidAt(): Date | null {
    return this._paidAt;
  }

  /** Records the payment; paying a paid order again changes nothing (redeliveries are expected). */
  markPaid(paidAt: Date): void {
    if (this._status === 'paid') return;
    this._status = 'paid';
    this._paidAt = paidAt;
    this.apply(new OrderPaidDomainEvent(this.id, paidAt));
  }
}
