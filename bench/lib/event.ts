/**
 * The event class of the contract, for the processes that run our library: class-transformer rebuilds
 * it and class-validator checks it on the consumer side, as in a real service.
 */
import { randomUUID } from 'node:crypto';
import { Type } from 'class-transformer';
import { IsArray, IsDate, IsInt, IsString, IsUUID } from 'class-validator';
import { IntegrationEvent } from 'nestjs-integration-events';
import { AMOUNT_CENTS, CUSTOMER_ID, EVENT_NAME, LINES, NOTE, PLACED_AT } from './contract';

@IntegrationEvent({ name: EVENT_NAME, version: 1 })
export class BenchOrderPlaced {
  @IsInt() n!: number;
  @IsUUID() orderId!: string;
  @IsString() customerId!: string;
  @IsInt() amountCents!: number;
  @Type(() => Date) @IsDate() placedAt!: Date;
  @IsArray() lines!: Array<{ sku: string; quantity: number; priceCents: number }>;
  @IsString() note!: string;

  /** Consumers rebuild the event with `new BenchOrderPlaced()`: every argument is optional. */
  constructor(n?: number, orderId?: string) {
    if (n === undefined) return;
    this.n = n;
    this.orderId = orderId ?? randomUUID();
    this.customerId = CUSTOMER_ID;
    this.amountCents = AMOUNT_CENTS;
    this.placedAt = new Date(PLACED_AT);
    this.lines = LINES;
    this.note = NOTE;
  }
}

