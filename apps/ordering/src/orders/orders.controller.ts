import { Body, Controller, Get, NotFoundException, Param, ParseUUIDPipe, Post, UnprocessableEntityException } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import { TransactionTurns } from 'nestjs-integration-events';
import { CreateOrderCommand } from './commands/create-order.command';
import { CreateOrderDto } from './create-order.dto';
import { CreditLimitExceededError } from './domain/credit-limit-exceeded.error';
import type { Order } from './domain/order.aggregate';
import { OrdersRepository } from './orders.repository';

interface OrderView {
  id: string;
  customerId: string;
  amountCents: number;
  status: string;
  createdAt: Date;
  paidAt: Date | null;
}

@Controller('orders')
export class OrdersController {
  constructor(
    private readonly commandBus: CommandBus,
    private readonly orders: OrdersRepository,
    /** On SQLite (embedded mode) requests take turns with the inbox transactions; on PostgreSQL they do not wait. */
    private readonly turns: TransactionTurns,
  ) {}

  @Post()
  async create(@Body() body: CreateOrderDto): Promise<OrderView> {
    try {
      const command = new CreateOrderCommand(body.customerId, body.amountCents);
      return view(await this.turns.run(() => this.commandBus.execute<CreateOrderCommand, Order>(command)));
    } catch (error) {
      if (error instanceof CreditLimitExceededError) throw new UnprocessableEntityException(error.message);
      throw error;
    }
  }

  @Get(':id')
  async get(@Param('id', ParseUUIDPipe) id: string): Promise<OrderView> {
    const order = await this.turns.run(() => this.orders.find(id));
    if (!order) throw new NotFoundException(`Order ${id} not found`);
    return view(order);
  }
}

function view(order: Order): OrderView {
  return {
    id: order.id,
    customerId: order.customerId,
    amountCents: order.amountCents,
    status: order.status,
    createdAt: order.createdAt,
    paidAt: order.paidAt,
  };
}
