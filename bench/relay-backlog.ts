/**
 * Relay throughput on a backlog: N rows already committed in the outbox, one service's relay drains
 * them to RabbitMQ (publisher confirms, rows marked sent), a plain amqplib consumer acks them.
 * Prints rows/s for "all marked sent" and "all received".
 *
 *   npm run bench:relay -- [rows=20000] [batchSize=200]
 *
 * Uses DATABASE_URL / RABBITMQ_URL (default: the local services) and a schema and exchange of its own,
 * dropped at the end.
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import * as amqp from 'amqplib';
import { Client } from 'pg';
import { createOutboxMigration, IntegrationEventsModule, OutboxRelay } from 'nestjs-integration-events';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

async function main(): Promise<void> {
  const rows = Number(process.argv[2] ?? 20_000);
  const batchSize = Number(process.argv[3] ?? 200);
  const id = randomBytes(4).toString('hex');
  const schema = `bench_${id}`;
  const exchange = `bench-${id}`;
  const table = `"${schema}"."integration_events_outbox"`;

  const db = new Client({ connectionString: DATABASE_URL });
  await db.connect();
  const Migration = createOutboxMigration({ schema });
  await new Migration().up({ query: (text: string) => db.query(text) } as never);
  const body = JSON.stringify({ orderId: '00000000-0000-4000-8000-000000000000', customerId: 'customer-0001', amountCents: 12345, placedAt: new Date().toISOString(), lines: [{ sku: 'SKU-000001', quantity: 2, priceCents: 4500 }, { sku: 'SKU-000002', quantity: 1, priceCents: 3345 }], note: 'x'.repeat(40) });
  await db.query(
    `INSERT INTO ${table} (id, event_name, event_version, payload, headers, occurred_at)
     SELECT gen_random_uuid(), 'bench.order-created', 1, $1,
            jsonb_build_object('ie-event-name', 'bench.order-created', 'ie-event-version', 1,
              'ie-occurred-at', '2026-11-26T00:00:00.000Z', 'ie-source-service', 'bench', 'ie-correlation-id', 'bench'),
            now()
     FROM generate_series(1, $2)`,
    [body, rows],
  );
  await db.query(`VACUUM ANALYZE ${table}`);

  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: true });
  const queue = `${exchange}.sink`;
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, exchange, '#');
  await channel.prefetch(1_000);
  let received = 0;
  let allReceived!: () => void;
  const receivedAll = new Promise<void>((resolve) => (allReceived = resolve));
  await channel.consume(queue, (message) => {
    if (!message) return;
    channel.ack(message);
    if (++received === rows) allReceived();
  });

  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url: DATABASE_URL, extra: { max: 4 } }),
      IntegrationEventsModule.forRoot({
        serviceName: 'bench',
        rabbitmq: { url: RABBITMQ_URL, exchange },
        outbox: { schema },
        relay: { batchSize, enabled: true },
        consumer: { enabled: false },
      }),
    ],
  })
  class BenchModule {}

  const started = process.hrtime.bigint();
  const app = await NestFactory.createApplicationContext(BenchModule, { logger: ['error', 'warn'] });
  let sentAt = 0n;
  for (;;) {
    const { rows: [row] } = await db.query(`SELECT count(*)::int AS pending FROM ${table} WHERE status <> 'sent'`);
    if (row.pending === 0) {
      sentAt = process.hrtime.bigint();
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await receivedAll;
  const receivedAt = process.hrtime.bigint();
  const seconds = (end: bigint) => Number(end - started) / 1e9;

  console.log(`Relay backlog drain: ${rows} rows, batchSize ${batchSize} (Node ${process.version}, ${require('node:os').cpus().length} CPUs)`);
  console.log(`  all marked sent : ${seconds(sentAt).toFixed(2)} s  → ${Math.round(rows / seconds(sentAt))} rows/s (includes app start)`);
  console.log(`  all received    : ${seconds(receivedAt).toFixed(2)} s  → ${Math.round(rows / seconds(receivedAt))} rows/s`);
  if (received !== rows) throw new Error(`received ${received} of ${rows}`);

  await app.get(OutboxRelay).stop();
  await app.close();
  await channel.deleteQueue(queue);
  await channel.deleteExchange(exchange);
  await connection.close();
  await db.query(`DROP SCHEMA "${schema}" CASCADE`);
  await db.end();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
