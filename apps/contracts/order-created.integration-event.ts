import { Type } from 'class-transformer';
import { IsDate, IsInt, IsPositive, IsString, IsUUID, Max } from 'class-validator';
import { IntegrationEvent } from 'nestjs-integration-events';

/**
 * Published by ordering when an order is placed. The contract is the name, the version and the JSON
 * shape; this class is one service's view of it (both example services share it for brevity, but a
 * service written in another language would read the same message).
 */
@IntegrationEvent({ name: 'ordering.order-created', version: 1 })
export class OrderCreatedIntegrationEvent {
  @IsUUID()
  readonly orderId: string;

  @IsString()
  readonly customerId: string;

  /** Amount to charge, in cents (a PostgreSQL integer, as the services store it). */
  @IsInt()
  @IsPositive()
  @Max(2_147_483_647)
  readonly amountCents: number;

  @Type(() => Date)
  @IsDate()
  readonly placedAt: Date;

  constructor(orderId: string, customerId: string, amountCents: number, placedAt: Date) {
    this.orderId = orderId;
    this.customerId = customerId;
    this.amountCents = amountCents;
    this.placedAt = placedAt;
  }
}
