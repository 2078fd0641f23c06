import { AggregateRoot } from '@nestjs/cqrs';
import { PaymentRecordedDomainEvent } from './payment-recorded.domain-event';

/** A payment taken for one order. */
export class PaymentAggregate extends AggregateRoot {
  private constructor(
    readonly id: string,
    readonly orderId: string,
    readonly amountCents: number,
    readonly paidAt: Date,
  ) {
    super();
  }

  static record(id: string, orderId: string, amountCents: number, paidAt: Date): PaymentAggregate {
    const payment = new PaymentAggregate(id, orderId, amountCents, paidAt);
    payment.apply(new PaymentRecordedDomainEvent(id, orderId, amountCents, paidAt));
    return payment;
  }
}
