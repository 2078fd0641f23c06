import type { Channel } from 'amqplib';
import type { DiscoveredHandler } from '../../discovery/discovered-handler';
import type { QueueType } from '../../options/integration-events-module-options.interface';

/** Name of the wait queue of one retry tier of a handler's queue, e.g. `payments.order-created.retry.2000ms`. */
export function waitQueueName(queue: string, tierMs: number): string {
  return `${queue}.retry.${tierMs}ms`;
}

/**
 * Declares everything one handler needs, idempotently, on every (re)connect:
 *
 * - its queue, bound to the topic exchange by the event name;
 * - one wait queue per retry tier, with no consumer: a copy published there with a per-message TTL
 *   expires at the head of the queue and is dead-lettered by RabbitMQ, through the default exchange,
 *   straight back to the handler's queue (never through the topic exchange, so other handlers of the
 *   event do not run again). Wait queues carry no queue-wide TTL (every copy has its own, within its
 *   tier), so their arguments do not depend on the retry delays: a service restarted with other delays
 *   declares the queues it shares with the old ones unchanged, and copies left in the others still
 *   expire back to the handler's queue.
 * - its dead-letter queue.
 *
 * Quorum wait queues dead-letter at-least-once (`x-dead-letter-strategy`), which RabbitMQ requires to
 * pair with `x-overflow: reject-publish`.
 */
export async function declareHandlerTopology(
  channel: Channel,
  handler: DiscoveredHandler,
  exchange: string,
  queueType: QueueType,
): Promise<void> {
  const type = { 'x-queue-type': queueType };
  await channel.assertExchange(exchange, 'topic', { durable: true });
  await channel.assertQueue(handler.queue, { durable: true, arguments: type });
  await channel.bindQueue(handler.queue, exchange, handler.event.name);
  for (const tier of handler.retryPolicy.tiers()) {
    await channel.assertQueue(waitQueueName(handler.queue, tier), {
      durable: true,
      arguments: {
        ...type,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': handler.queue,
        ...(queueType === 'quorum' ? { 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' } : {}),
      },
    });
  }
  await channel.assertQueue(handler.deadLetterQueue, { durable: true, arguments: type });
}
