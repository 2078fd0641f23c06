import { type DynamicModule, Module } from '@nestjs/common';
import { CqrsModule } from '@nestjs/cqrs';
import { createInboxMigration, createOutboxMigration, IntegrationEventsModule } from 'nestjs-integration-events';
import type { ServiceConfig } from '../../shared/example-config';
import { integrationEventsOptions } from '../../shared/integration-events.options';
import { ObservabilityModule } from '../../shared/observability.module';
import { PersistenceModule } from '../../shared/persistence.module';
import { CreateOrderHandler } from './orders/commands/create-order.command';
import { OrderPaidHandler } from './orders/commands/order-paid.command';
import { CreateOrderPaidLog1764144000004 } from './orders/create-order-paid-log.migration';
import { CreateOrdersTable1764144000001 } from './orders/create-orders-table.migration';
import { CreditLimitPolicy } from './orders/credit-limit.policy';
import { OrderCreatedDomainEventHandler } from './orders/order-created.domain-handler';
import { OrderPaidLogEntry } from './orders/order-paid-log.entity';
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
  static register(config: ServiceConfig): DynamicModule {
    const schema = config.database.kind === 'postgres' ? { schema: 'ordering' } : {};
    return {
      module: OrderingModule,
      imports: [
        PersistenceModule.forRoot({
          database: config.database,
          service: 'ordering',
          entities: [OrderEntity, OrderPaidLogEntry],
          migrations: [
            createOutboxMigration(schema),
            createInboxMigration(schema),
            CreateOrdersTable1764144000001,
            CreateOrderPaidLog1764144000004,
          ],
        }),
        CqrsModule.forRoot(),
        IntegrationEventsModule.forRoot(integrationEventsOptions('ordering', config)),
        ObservabilityModule,
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
