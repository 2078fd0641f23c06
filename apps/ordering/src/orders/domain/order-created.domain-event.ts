/** Raised by the Order aggregate when an order is placed. Lives only inside ordering's transaction. */
export class OrderCreatedDomainEvent {
  constructor(
    readonly orderId: string,
    readonly customerId: string,
    readonly amountCents: number,
    readonly placedAt: Date,
  ) {}
}
