import { type DynamicModule, Module } from '@nestjs/common';
import { createOutboxMigration, IntegrationEventsModule } from 'nestjs-integration-events';
import type { ExampleConfig } from '../../shared/example-config';
import { PersistenceModule } from '../../shared/persistence.module';
import { CreatePaymentsTable1764144000002 } from './payments/create-payments-table.migration';
import { OrderCreatedIntegrationEventHandler } from './payments/order-created.handler';
import { Payment } from './payments/payment.entity';
import { PaymentsService } from './payments/payments.service';

/** The payments service: hears OrderCreated, records a payment, publishes OrderPaid. */
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
          migrations: [createOutboxMigration({ schema: 'payments' }), CreatePaymentsTable1764144000002],
        }),
        IntegrationEventsModule.forRoot({
          serviceName: 'payments',
          rabbitmq: { url: config.rabbitmqUrl },
          outbox: { schema: 'payments' },
        }),
      ],
      providers: [PaymentsService, OrderCreatedIntegrationEventHandler],
    };
  }
}
