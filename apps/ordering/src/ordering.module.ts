import { type DynamicModule, Module } from '@nestjs/common';
import { createOutboxMigration, IntegrationEventsModule } from 'nestjs-integration-events';
import type { ExampleConfig } from '../../shared/example-config';
import { PersistenceModule } from '../../shared/persistence.module';
import { CreateOrdersTable1764144000001 } from './orders/create-orders-table.migration';
import { Order } from './orders/order.entity';
import { OrderPaidIntegrationEventHandler } from './orders/order-paid.handler';
import { OrdersController } from './orders/orders.controller';
import { OrdersService } from './orders/orders.service';

/** The ordering service: takes orders, publishes OrderCreated, learns from payments when they are paid. */
@Module({})
export class OrderingModule {
  static register(config: ExampleConfig): DynamicModule {
    return {
      module: OrderingModule,
      imports: [
        PersistenceModule.forRoot({
          databaseUrl: config.databaseUrl,
          schema: 'ordering',
          entities: [Order],
          migrations: [createOutboxMigration({ schema: 'ordering' }), CreateOrdersTable1764144000001],
        }),
        IntegrationEventsModule.forRoot({
          serviceName: 'ordering',
          rabbitmq: { url: config.rabbitmqUrl },
          outbox: { schema: 'ordering' },
        }),
      ],
      controllers: [OrdersController],
      providers: [OrdersService, OrderPaidIntegrationEventHandler],
    };
  }
}
