import { type DynamicModule, Module } from '@nestjs/common';
import { createInboxMigration, createOutboxMigration, IntegrationEventsModule } from 'nestjs-integration-events';
import type { ExampleConfig } from '../../shared/example-config';
import { PersistenceModule } from '../../shared/persistence.module';
import { CqrsModule } from '@nestjs/cqrs';
import { CreateOrderHandler } from './orders/commands/create-order.command';
import { OrderPaidHandler } from './orders/commands/order-paid.command';
import { CreateOrdersTable1764144000001 } from './orders/create-orders-table.migration';
import { CreateOrderPaidLog1764144000004 } from './orders/create-order-paid-log.migration';
import { CreditLimitPolicy } from './orders/credit-limit.policy';
import { OrderCreatedDomainEventHandler } from './orders/order-created.domain-handler';
import { OrderEntity } from './orders/order.entity';
import { OrderPaidIntegrationEventHandler } from './orders/order-paid.integration-handler';
import { OrdersController } from './orders/orders.controller';
import { OrdersRepository } from './orders/orders.repository';

/**
 * The ordering service: POST /orders → CreateOrderCommand → Order aggregate → OrderCreatedDomainEvent,
 * handled in the transaction → OrderCreatedIntegrationEvent in the outbox. OrderPaidIntegrationEvent from
 * payments → OrderPaidCommand → the order is paid.
 */
@Module({})
export class OrderingModule {
  static register(config: ExampleConfig): DynamicModule {
    return {
      module: OrderingModule,
      imports: [
        PersistenceModule.forRoot({
          databaseUrl: config.databaseUrl,
          schema: 'ordering',
          entities: [OrderEntity],
          migrations: [createOutboxMigration({ schema: 'ordering' }), createInboxMigration({ schema: 'ordering' }), CreateOrdersTable1764144000001, CreateOrderPaidLog1764144000004],
        }),
        CqrsModule.forRoot(),
        IntegrationEventsModule.forRoot({
          serviceName: 'ordering',
          rabbitmq: { url: config.rabbitmqUrl },
          outbox: { schema: 'ordering' },
        }),
      ],
      controllers: [OrdersController],
      providers: [
        OrdersRepository,
        CreateOrderHandler,
        OrderPaidHandler,
        OrderCreatedDomainEventHandler,
        CreditLimitPolicy,
        OrderPaidIntegrationEventHandler,
      ],
    };
  }
}
