import type { RetryPolicyOptions } from '../retry/retry-policy-options.interface';

/** Options of `@IntegrationEventHandler(Event, options)`. */
export interface IntegrationEventHandlerOptions {
  /**
   * Name of this handler's queue. The default, `<serviceName>.<HandlerClassName>`, changes when the
   * class is renamed, which orphans the old queue and its messages: name it explicitly in production.
   * @default `<serviceName>.<HandlerClassName>`
   */
  queue?: string;

  /**
   * Unacknowledged messages RabbitMQ hands this handler at once (per process). `prefetch: 1` with
   * `concurrency: 1` handles one message at a time, in queue order.
   * @default the module's `consumer.prefetch`
   */
  prefetch?: number;

  /**
   * Calls of this handler running at once (per process); never more than its `prefetch`.
   * @default the module's `consumer.concurrency`
   */
  concurrency?: number;

  /**
   * This handler's retry policy, field by field over the module's `consumer.retry`.
   * @default the module's `consumer.retry`
   */
  retry?: RetryPolicyOptions;

  /**
   * How long one call of this handler may take, in ms, before it counts as a failed attempt.
   * @default the module's `consumer.handlerTimeoutMs`
   */
  timeoutMs?: number;

  /**
   * Name of this handler's dead-letter queue.
   * @default `<queue>.dlq`
   */
  deadLetterQueue?: string;

  /**
   * Whether this handler's calls run in an inbox transaction (duplicates skipped, the handler's database
   * writes and published events committed with the inbox record). Turn off for handlers that touch no
   * database: they then see every delivery, duplicates included.
   * @default the module's `inbox.enabled`
   */
  inbox?: boolean;

  /**
   * The handler this one takes over from for another version of the same event (its class, a provider
   * of this application), while a service moves from one version to the other. The routing key carries
   * no version, so each of the two queues gets both versions: each handler acknowledges the other's
   * version without a call instead of dead-lettering it. Pairs that share a handler form one group (v3
   * replaces v2, which replaces v1): each handler of a group leaves every other version of the group to
   * its handler. A version no handler of the group takes is still dead-lettered; so is one routed to a
   * handler in no group (another job done with the same event), and a copy of another version of the
   * group sent straight to a queue (a requeued dead letter) or through another binding, which the other
   * handlers never got.
   * @default none
   */
  replaces?: abstract new (...args: never[]) => object;
}
