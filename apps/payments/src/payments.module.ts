import { type DynamicModule, Module } from '@nestjs/common';
import { CqrsModule } from '@nestjs/cqrs';
import { createInboxMigration, createOutboxMigration, IntegrationEventsModule } from 'nestjs-integration-events';
import type { ServiceConfig } from '../../shared/example-config';
import { integrationEventsOptions } from '../../shared/integration-events.options';
import { ObservabilityModule } from '../../shared/observability.module';
import { PersistenceModule } from '../../shared/persistence.module';
import { CreatePaymentAttemptsLog1764144000003 } from './payments/create-payment-attempts-log.migration';
import { CreatePaymentsTable1764144000002 } from './payments/create-payments-table.migration';
import { OrderCreatedIntegrationEventHandler } from './payments/order-created.handler';
import { PaymentAttemptLogEntry } from './payments/payment-attempt-log.entity';
import { PaymentRecordedConverter } from './payments/payment-recorded.converter';
import { Payment } from './payments/payment.entity';
import { RecordPaymentHandler } from './payments/record-payment.command';

/**
 * The payments service: OrderCreatedIntegrationEvent → RecordPaymentCommand → Payment aggregate →
 * PaymentRecordedDomainEvent → (converter) OrderPaidIntegrationEvent in the outbox, same transaction.
 */
@Module({})
export class PaymentsModule {
  static register(config: ServiceConfig): DynamicModule {
    const schema = config.database.kind === 'postgres' ? { schema: 'payments' } : {};
    return {
      module: PaymentsModule,
      imports: [
        PersistenceModule.forRoot({
          database: config.database,
          service: 'payments',
          entities: [Payment, PaymentAttemptLogEntry],
          migrations: [
            createOutboxMigration(schema),
            createInboxMigration(schema),
            CreatePaymentsTable1764144000002,
            CreatePaymentAttemptsLog1764144000003,
          ],
        }),
        CqrsModule.forRoot(),
        IntegrationEventsModule.forRoot(integrationEventsOptions('payments', config)),
        ObservabilityModule,
      ],
      providers: [RecordPaymentHandler, PaymentRecordedConverter, OrderCreatedIntegrationEventHandler],
    };
  }
}
