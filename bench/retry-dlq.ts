/**
 * Retries under load: 1,000 messages whose handler always fails go through all their attempts to the
 * dead-letter queue, while healthy messages keep arriving on the same queue. Prints how long the
 * failures take to reach the DLQ and the latency (commit → handler) of the healthy ones meanwhile.
 *
 *   npm run bench:retry -- [failing=1000] [healthy per second=200]
 *
 * Short test delays: 10 attempts, 10 ms doubling to 100 ms, 20 % jitter.
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import * as amqp from 'amqplib';
import { Client } from 'pg';
import {
  createOutboxMigration,
  IntegrationEvent,
  IntegrationEventConsumers,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  IntegrationEventsModule,
  type IIntegrationEventHandler,
} from 'nestjs-integration-events';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

@IntegrationEvent({ name: 'bench.work-item', version: 1 })
class WorkItem {
  constructor(readonly fail: boolean, readonly committedAt: number) {}
}

@Injectable()
@IntegrationEventHandler(WorkItem)
class WorkHandler implements IIntegrationEventHandler<WorkItem> {
  readonly healthyLatencies: number[] = [];
  failingCalls = 0;
  handle(event: WorkItem): void {
    if (event.fail) {
      this.failingCalls++;
      throw new Error('always fails');
    }
    this.healthyLatencies.push(Date.now() - event.committedAt);
  }
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};

async function main(): Promise<void> {
  const failing = Number(process.argv[2] ?? 1_000);
  const healthyRate = Number(process.argv[3] ?? 200);
  const id = randomBytes(4).toString('hex');
  const schema = `bench_${id}`;
  const exchange = `bench-${id}`;
  const serviceName = `bench-${id}`;
  const db = new Client({ connectionString: DATABASE_URL });
  await db.connect();
  const Migration = createOutboxMigration({ schema });
  await new Migration().up({ query: (text: string) => db.query(text) } as never);

  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url: DATABASE_URL, extra: { max: 8 } }),
      IntegrationEventsModule.forRoot({
        serviceName,
        rabbitmq: { url: RABBITMQ_URL, exchange },
        outbox: { schema },
        consumer: { prefetch: 20, retry: { maxAttempts: 10, initialDelayMs: 10, multiplier: 2, maxDelayMs: 100, jitter: 0.2 } },
      }),
    ],
    providers: [WorkHandler],
  })
  class BenchModule {}

  const app = await NestFactory.createApplicationContext(BenchModule, { logger: ['error'] });
  const publisher = app.get(IntegrationEventPublisher);
  const handler = app.get(WorkHandler);
  const queue = `${serviceName}.WorkHandler`;
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();

  const started = Date.now();
  for (let i = 0; i < failing; i += 100) {
    await publisher.publish(Array.from({ length: Math.min(100, failing - i) }, () => new WorkItem(true, Date.now())), { standalone: true });
  }
  let healthySent = 0;
  let dlqDepth = 0;
  let doneAt = 0;
  const tick = 1_000 / Math.max(1, healthyRate / 10);
  while (!doneAt) {
    await publisher.publish(Array.from({ length: Math.max(1, Math.round(healthyRate / 100)) }, () => new WorkItem(false, Date.now())), { standalone: true });
    healthySent += Math.max(1, Math.round(healthyRate / 100));
    dlqDepth = (await channel.checkQueue(`${queue}.dlq`)).messageCount;
    if (dlqDepth >= failing) doneAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, tick / 10));
    if (Date.now() - started > 300_000) throw new Error(`timed out with ${dlqDepth} of ${failing} dead-lettered`);
  }
  const deadline = Date.now() + 10_000;
  while (handler.healthyLatencies.length < healthySent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));

  console.log(`Retries under load: ${failing} always-failing messages (10 attempts, 10→100 ms backoff), healthy ones at ~${healthyRate}/s (Node ${process.version}, ${require('node:os').cpus().length} CPUs)`);
  console.log(`  all ${failing} in the dead-letter queue after ${((doneAt - started) / 1000).toFixed(2)} s (handler calls for them: ${handler.failingCalls}, expected ${failing * 10})`);
  console.log(`  healthy messages handled meanwhile: ${handler.healthyLatencies.length} of ${healthySent}`);
  console.log(`  healthy latency commit → handler: p50 ${percentile(handler.healthyLatencies, 50)} ms, p99 ${percentile(handler.healthyLatencies, 99)} ms, max ${Math.max(...handler.healthyLatencies)} ms`);

  const queues = app.get(IntegrationEventConsumers).handlers.flatMap((h) => [h.queue, h.deadLetterQueue, ...h.waitQueues]);
  await app.close();
  const cleanup = await connection.createChannel();
  for (const name of queues) {
    await cleanup.deleteQueue(name).catch(() => undefined);
  }
  await cleanup.deleteExchange(exchange).catch(() => undefined);
  await connection.close();
  await db.query(`DROP SCHEMA "${schema}" CASCADE`);
  await db.end();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
