import { Type } from 'class-transformer';
import { IsDate, IsUUID } from 'class-validator';
import { IntegrationEvent } from 'nestjs-integration-events';

/** Published by payments once an order's payment is recorded. */
@IntegrationEvent({ name: 'payments.order-paid', version: 1 })
export class OrderPaidIntegrationEvent {
  @IsUUID()
  readonly orderId: string;

  @IsUUID()
  readonly paymentId: string;

  @Type(() => Date)
  @IsDate()
  readonly paidAt: Date;

  constructor(orderId: string, paymentId: string, paidAt: Date) {
    this.orderId = orderId;
    this.paymentId = paymentId;
    this.paidAt = paidAt;
  }
}
