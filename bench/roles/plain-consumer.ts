/**
 * A plain amqplib consumer, no framework: declares its queue, parses each body (as any real consumer
 * would), counts it and acks it. The consumer side of Limit A, Limit B, the dual write, and the
 * reference of the inbox workload.
 */
import * as amqp from 'amqplib';
import type { Role } from '../child';
import { HandledCounter, numberOf } from '../lib/contract';
import { now, RABBITMQ_URL } from '../lib/helpers';

interface Args {
  exchange: string;
  queue: string;
  bindingKey: string;
  prefetch: number;
  expected: number;
  /** Subscribe only on `go` (the queue is pre-loaded meanwhile). */
  startOnGo?: boolean;
  recordTimes?: boolean;
}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(args.exchange, 'topic', { durable: true });
  await channel.assertQueue(args.queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
  await channel.bindQueue(args.queue, args.exchange, args.bindingKey);
  await channel.prefetch(args.prefetch);
  const counter = new HandledCounter(args.expected, args.recordTimes ?? true, () => io.send({ type: 'done' }), now, () => io.send({ type: 'first' }));
  const subscribe = () =>
    channel.consume(args.queue, (message) => {
      if (!message) return;
      counter.handle(numberOf(message.content));
      channel.ack(message);
    });

  if (!args.startOnGo) await subscribe();
  io.send({ type: 'ready' });
  const stop = io.next('stop');
  if (args.startOnGo && (await Promise.race([io.next('go').then(() => true), stop.then(() => false)]))) await subscribe();
  await stop;
  await channel.close();
  await connection.close();
  return counter.result();
};
