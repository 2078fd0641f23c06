import { type DynamicModule, Module } from '@nestjs/common';
import { createInboxMigration, createOutboxMigration, IntegrationEventsModule } from 'nestjs-integration-events';
import type { ExampleConfig } from '../../shared/example-config';
import { PersistenceModule } from '../../shared/persistence.module';
import { CreatePaymentsTable1764144000002 } from './payments/create-payments-table.migration';
import { CreatePaymentAttemptsLog1764144000003 } from './payments/create-payment-attempts-log.migration';
import { CqrsModule } from '@nestjs/cqrs';
import { OrderCreatedIntegrationEventHandler } from './payments/order-created.handler';
import { PaymentRecordedConverter } from './payments/payment-recorded.converter';
import { Payment } from './payments/payment.entity';
import { RecordPaymentHandler } from './payments/record-payment.command';

/**
 * The payments service: OrderCreatedIntegrationEvent → RecordPaymentCommand → Payment aggregate →
 * PaymentRecordedDomainEvent → (converter) OrderPaidIntegrationEvent in the outbox, same transaction.
 */
@Module({})
export class PaymentsModule {
  static register(config: ExampleConfig): DynamicModule {
    return {
      module: PaymentsModule,
      imports: [
        PersistenceModule.forRoot({
          databaseUrl: config.databaseUrl,
          schema: 'payments',
          entities: [Payment],
          migrations: [createOutboxMigration({ schema: 'payments' }), createInboxMigration({ schema: 'payments' }), CreatePaymentsTable1764144000002, CreatePaymentAttemptsLog1764144000003],
        }),
        CqrsModule.forRoot(),
        IntegrationEventsModule.forRoot({
          serviceName: 'payments',
          rabbitmq: { url: config.rabbitmqUrl },
          outbox: { schema: 'payments' },
        }),
      ],
      providers: [RecordPaymentHandler, PaymentRecordedConverter, OrderCreatedIntegrationEventHandler],
    };
  }
}
