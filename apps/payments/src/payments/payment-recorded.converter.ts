import { IntegrationEventConverter, type IIntegrationEventConverter } from 'nestjs-integration-events';
import { OrderPaidIntegrationEvent } from '../../../contracts/order-paid.integration-event';
import { PaymentRecordedDomainEvent } from './payment-recorded.domain-event';

/** Tells other services about recorded payments, with no handler code (the seed's converter). */
@IntegrationEventConverter(PaymentRecordedDomainEvent)
export class PaymentRecordedConverter
  implements IIntegrationEventConverter<PaymentRecordedDomainEvent, OrderPaidIntegrationEvent>
{
  convert(event: PaymentRecordedDomainEvent): OrderPaidIntegrationEvent {
    return new OrderPaidIntegrationEvent(event.orderId, event.paymentId, event.paidAt);
  }
}
