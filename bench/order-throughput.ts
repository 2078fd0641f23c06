/**
 * The cost of the outbox in the business transaction: orders created per second through the CommandBus
 * (aggregate → domain event handled in the transaction → integration event in the outbox), against the
 * same command with publishing switched off (the domain event is still raised and handled, nothing is
 * written to the outbox). Rounds alternate; the median of each is printed.
 *
 *   npm run bench:orders -- [orders per round=3000] [concurrency=16] [rounds=3]
 */
import 'reflect-metadata';
import { randomBytes, randomUUID } from 'node:crypto';
import { Injectable, Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AggregateRoot, CommandBus, CommandHandler, CqrsModule, EventPublisher, EventsHandler, type ICommandHandler, type IEventHandler } from '@nestjs/cqrs';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional, Transactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import * as amqp from 'amqplib';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { createOutboxMigration, IntegrationEvent, IntegrationEventPublisher, IntegrationEventsModule } from 'nestjs-integration-events';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

class OrderPlaced {
  constructor(readonly id: string, readonly customerId: string, readonly amountCents: number) {}
}
class BenchOrder extends AggregateRoot {
  constructor(readonly id: string, readonly customerId: string, readonly amountCents: number) {
    super();
    this.apply(new OrderPlaced(id, customerId, amountCents));
  }
}
class PlaceOrder {
  constructor(readonly customerId: string, readonly amountCents: number) {}
}
@IntegrationEvent({ name: 'bench.order-created', version: 1 })
class OrderCreatedIntegrationEvent {
  constructor(readonly orderId: string, readonly customerId: string, readonly amountCents: number) {}
}

@Injectable()
class BenchSettings {
  table = '';
}

@CommandHandler(PlaceOrder)
class PlaceOrderHandler implements ICommandHandler<PlaceOrder> {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly events: EventPublisher,
    private readonly settings: BenchSettings,
  ) {}
  @Transactional()
  async execute({ customerId, amountCents }: PlaceOrder): Promise<void> {
    const order = this.events.mergeObjectContext(new BenchOrder(randomUUID(), customerId, amountCents));
    await this.txHost.tx.query(`INSERT INTO ${this.settings.table} (id, customer_id, amount_cents) VALUES ($1, $2, $3)`, [order.id, customerId, amountCents]);
    order.commit();
  }
}

/** Publishing on: the seed's domain handler. */
@EventsHandler(OrderPlaced)
class PublishingHandler implements IEventHandler<OrderPlaced> {
  constructor(private readonly publisher: IntegrationEventPublisher) {}
  async handle(event: OrderPlaced): Promise<void> {
    await this.publisher.publish(new OrderCreatedIntegrationEvent(event.id, event.customerId, event.amountCents));
  }
}

/** Publishing off: the domain event is still handled in the transaction, but nothing is published. */
@EventsHandler(OrderPlaced)
class NonPublishingHandler implements IEventHandler<OrderPlaced> {
  handle(): void {}
}

function benchModule(schema: string, exchange: string, publishing: boolean): DynamicModule {
  @Module({})
  class BenchModule {}
  return {
    module: BenchModule,
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url: DATABASE_URL, extra: { max: 20 } }),
      ClsModule.forRoot({ global: true, plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })] }),
      CqrsModule.forRoot(),
      IntegrationEventsModule.forRoot({ serviceName: 'bench', rabbitmq: { url: RABBITMQ_URL, exchange }, outbox: { schema }, consumer: { enabled: false }, relay: { enabled: process.env.BENCH_RELAY !== 'off' } }),
    ],
    providers: [BenchSettings, PlaceOrderHandler, publishing ? PublishingHandler : NonPublishingHandler],
  };
}

async function runRound(schema: string, exchange: string, publishing: boolean, orders: number, concurrency: number): Promise<number> {
  const app = await NestFactory.createApplicationContext(benchModule(schema, exchange, publishing), { logger: ['error'] });
  app.get(BenchSettings).table = `"${schema}".orders`;
  const commandBus = app.get(CommandBus);
  for (let i = 0; i < 200; i++) await commandBus.execute(new PlaceOrder('warm-up', 100)); // warm the pool and JIT
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < orders) {
        next++;
        await commandBus.execute(new PlaceOrder('customer-0001', 1_250));
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await app.close();
  return orders / seconds;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const orders = Number(process.argv[2] ?? 3_000);
  const concurrency = Number(process.argv[3] ?? 16);
  const rounds = Number(process.argv[4] ?? 3);
  const id = randomBytes(4).toString('hex');
  const schema = `bench_${id}`;
  const exchange = `bench-${id}`;
  const db = new Client({ connectionString: DATABASE_URL });
  await db.connect();
  const Migration = createOutboxMigration({ schema });
  await new Migration().up({ query: (text: string) => db.query(text) } as never);
  await db.query(`CREATE TABLE "${schema}".orders (id uuid PRIMARY KEY, customer_id text NOT NULL, amount_cents int NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: true });
  await channel.assertQueue(`${exchange}.sink`, { durable: false, autoDelete: false });
  await channel.bindQueue(`${exchange}.sink`, exchange, '#');

  const results = { on: [] as number[], off: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    results.off.push(await runRound(schema, exchange, false, orders, concurrency));
    results.on.push(await runRound(schema, exchange, true, orders, concurrency));
  }
  const on = median(results.on);
  const off = median(results.off);
  const fmt = (values: number[]) => values.map((v) => Math.round(v)).join(', ');
  console.log(`Orders through the CommandBus: ${orders} per round, concurrency ${concurrency}, ${rounds} rounds (Node ${process.version}, ${require('node:os').cpus().length} CPUs)`);
  console.log(`  publishing off : median ${Math.round(off)} orders/s  (rounds: ${fmt(results.off)})`);
  console.log(`  publishing on  : median ${Math.round(on)} orders/s  (rounds: ${fmt(results.on)})`);
  console.log(`  ratio on/off   : ${(on / off).toFixed(3)}`);
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM "${schema}".integration_events_outbox`);
  console.log(`  outbox rows written: ${rows[0].n} (expected ${(orders + 200) * rounds})`);

  await channel.deleteQueue(`${exchange}.sink`);
  await channel.deleteExchange(exchange);
  await connection.close();
  await db.query(`DROP SCHEMA "${schema}" CASCADE`);
  await db.end();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
