/** Raised by the Order aggregate when its payment is confirmed. */
export class OrderPaidDomainEvent {
  constructor(
    readonly orderId: string,
    readonly paidAt: Date,
  ) {}
}
