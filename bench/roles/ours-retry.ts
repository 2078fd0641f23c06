/**
 * Retries under load (the former `bench:retry`): one service process (relay and consumer) whose
 * handler always fails for some messages, which go through every attempt (short test delays) to the
 * dead-letter queue, while healthy messages keep arriving on the same queue.
 */
import { Injectable } from '@nestjs/common';
import * as amqp from 'amqplib';
import {
  IntegrationEvent,
  IntegrationEventConsumers,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  type IIntegrationEventHandler,
} from 'nestjs-integration-events';
import type { Role } from '../child';
import { RABBITMQ_URL, sleep } from '../lib/helpers';
import { createApp } from '../lib/nest';

interface Args {
  exchange: string;
  schema: string;
  serviceName: string;
  failing: number;
  healthyRate: number;
  maxAttempts: number;
  /** consumer.ackDelayMs; the library's default when omitted. */
  ackDelayMs?: number;
}

@IntegrationEvent({ name: 'bench.work-item', version: 1 })
class WorkItem {
  constructor(
    readonly fail: boolean,
    readonly committedAt: number,
  ) {}
}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const healthyLatencies: number[] = [];
  let failingCalls = 0;

  @Injectable()
  @IntegrationEventHandler(WorkItem, { inbox: false })
  class WorkHandler implements IIntegrationEventHandler<WorkItem> {
    handle(event: WorkItem): void {
      if (event.fail) {
        failingCalls++;
        throw new Error('always fails');
      }
      healthyLatencies.push(Date.now() - event.committedAt);
    }
  }

  const app = await createApp({
    poolMax: 8,
    integrationEvents: {
      serviceName: args.serviceName,
      exchange: args.exchange,
      schema: args.schema,
      consumer: { prefetch: 20, ...(args.ackDelayMs !== undefined ? { ackDelayMs: args.ackDelayMs } : {}), retry: { maxAttempts: args.maxAttempts, initialDelayMs: 10, multiplier: 2, maxDelayMs: 100, jitter: 0.2 } },
    },
    providers: [WorkHandler],
  });
  const handlers = app.get(IntegrationEventConsumers).handlers;
  const queues = handlers.flatMap((h) => [h.queue, h.deadLetterQueue, ...h.waitQueues]);
  io.send({ type: 'ready', queues });
  await io.next('go');

  const publisher = app.get(IntegrationEventPublisher);
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  const started = Date.now();
  for (let i = 0; i < args.failing; i += 100) {
    await publisher.publish(Array.from({ length: Math.min(100, args.failing - i) }, () => new WorkItem(true, Date.now())), { standalone: true });
  }
  let healthySent = 0;
  let doneAt = 0;
  let dlqDepth = 0;
  const perTick = Math.max(1, Math.round(args.healthyRate / 100));
  const tick = 1_000 / Math.max(1, args.healthyRate / 10);
  while (!doneAt) {
    await publisher.publish(Array.from({ length: perTick }, () => new WorkItem(false, Date.now())), { standalone: true });
    healthySent += perTick;
    dlqDepth = (await channel.checkQueue(handlers[0]!.deadLetterQueue)).messageCount;
    if (dlqDepth >= args.failing) doneAt = Date.now();
    await sleep(tick / 10);
    if (Date.now() - started > 300_000) break;
  }
  const deadline = Date.now() + 10_000;
  while (healthyLatencies.length < healthySent && Date.now() < deadline) await sleep(20);
  await sleep(200);
  dlqDepth = (await channel.checkQueue(handlers[0]!.deadLetterQueue)).messageCount;

  await io.next('stop');
  await connection.close();
  await app.close();
  return { seconds: doneAt ? (doneAt - started) / 1_000 : NaN, dlqDepth, failingCalls, healthySent, healthyLatencies, queues };
};
