/**
 * Our consumer alone, in a service process of its own (relay off): one `@IntegrationEventHandler`
 * that counts each event, with the inbox (the default) or without (`inbox: false`).
 */
import { Injectable } from '@nestjs/common';
import { IntegrationEventConsumers, IntegrationEventHandler, type IIntegrationEventHandler } from 'nestjs-integration-events';
import type { Role } from '../child';
import { HandledCounter } from '../lib/contract';
import { BenchOrderPlaced } from '../lib/event';
import { now, sleep } from '../lib/helpers';
import { createApp } from '../lib/nest';

interface Args {
  exchange: string;
  schema: string;
  serviceName: string;
  queue: string;
  inbox: boolean;
  prefetch?: number;
  /** consumer.ackDelayMs; the library's default when omitted. */
  ackDelayMs?: number;
  expected: number;
  recordTimes?: boolean;
  /** Send `warm` once every event numbered from this on (a paced run's warm-up) was handled. */
  warmFrom?: number;
  /** The pool's idleTimeoutMillis (paced runs: --pool-idle-ms); pg's default when omitted. */
  poolIdleMs?: number;
  /** Boot (declaring the queues), report them, and leave. */
  declareOnly?: boolean;
}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const counter = new HandledCounter(args.expected, args.recordTimes ?? true, () => io.send({ type: 'done' }), now, () => io.send({ type: 'first' }));
  if (args.warmFrom !== undefined) counter.watchRange(args.warmFrom, () => io.send({ type: 'warm', t: now() }));

  @Injectable()
  @IntegrationEventHandler(BenchOrderPlaced, { queue: args.queue, inbox: args.inbox })
  class BenchHandler implements IIntegrationEventHandler<BenchOrderPlaced> {
    handle(event: BenchOrderPlaced): void {
      counter.handle(event.n);
    }
  }

  const app = await createApp({
    poolIdleMs: args.poolIdleMs,
    integrationEvents: {
      serviceName: args.serviceName,
      exchange: args.exchange,
      schema: args.schema,
      relay: { enabled: false },
      consumer: {
        ...(args.prefetch ? { prefetch: args.prefetch } : {}),
        ...(args.ackDelayMs !== undefined ? { ackDelayMs: args.ackDelayMs } : {}),
      },
    },
    providers: [BenchHandler],
  });
  const consumers = app.get(IntegrationEventConsumers);
  const queues = consumers.handlers.flatMap((h) => [h.queue, h.deadLetterQueue, ...h.waitQueues]);
  for (let i = 0; i < 500 && consumers.status.attached < consumers.status.handlers; i++) await sleep(10);
  if (args.declareOnly) {
    await app.close();
    io.send({ type: 'ready', queues });
    await io.next('stop');
    return { queues };
  }
  io.send({ type: 'ready', queues });
  await io.next('stop');
  await app.close();
  return counter.result();
};
