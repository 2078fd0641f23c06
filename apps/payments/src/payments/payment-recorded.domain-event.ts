/** Raised when a payment is recorded for an order. */
export class PaymentRecordedDomainEvent {
  constructor(
    readonly paymentId: string,
    readonly orderId: string,
    readonly amountCents: number,
    readonly paidAt: Date,
  ) {}
}
