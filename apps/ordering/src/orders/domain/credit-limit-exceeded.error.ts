/** A business rule refused the order; nothing of it is kept. */
export class CreditLimitExceededError extends Error {
  constructor(
    readonly customerId: string,
    readonly amountCents: number,
    readonly limitCents: number,
  ) {
    super(`Order of ${amountCents} cents exceeds the credit limit of ${limitCents} cents for customer ${customerId}`);
    this.name = 'CreditLimitExceededError';
  }
}
