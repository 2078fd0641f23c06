import { EventsHandler, type IEventHandler } from '@nestjs/cqrs';
import { CreditLimitExceededError } from './domain/credit-limit-exceeded.error';
import { OrderCreatedDomainEvent } from './domain/order-created.domain-event';

/** Orders above this many cents are refused. */
export const CREDIT_LIMIT_CENTS = 1_000_000;

/**
 * A business rule written as a domain-event handler. Because domain events are handled inside the
 * transaction, throwing here rolls back the order and its outbox row: nothing is kept, nothing is sent.
 */
@EventsHandler(OrderCreatedDomainEvent)
export class CreditLimitPolicy implements IEventHandler<OrderCreatedDomainEvent> {
  handle(event: OrderCreatedDomainEvent): void {
    if (event.amountCents > CREDIT_LIMIT_CENTS) {
      throw new CreditLimitExceededError(event.customerId, event.amountCents, CREDIT_LIMIT_CENTS);
    }
  }
}
