/**
 * Turns a domain event into the integration event(s) other services should hear about, with no
 * handler code: the result is published in the transaction that raised the domain event.
 * Return one event, several, or none (`undefined`, `null` or `[]`).
 *
 * @example
 * ```ts
 * @IntegrationEventConverter(PaymentRecordedDomainEvent)
 * export class PaymentRecordedConverter implements IIntegrationEventConverter<PaymentRecordedDomainEvent, OrderPaidIntegrationEvent> {
 *   convert(event: PaymentRecordedDomainEvent) {
 *     return new OrderPaidIntegrationEvent(event.orderId, event.paymentId, event.paidAt);
 *   }
 * }
 * ```
 */
export interface IIntegrationEventConverter<TDomainEvent extends object = object, TIntegrationEvent extends object = object> {
  convert(
    domainEvent: TDomainEvent,
  ): ConverterResult<TIntegrationEvent> | Promise<ConverterResult<TIntegrationEvent>>;
}

export type ConverterResult<TIntegrationEvent extends object> = TIntegrationEvent | readonly TIntegrationEvent[] | null | undefined;
