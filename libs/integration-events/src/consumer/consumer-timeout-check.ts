import type { Logger } from '@nestjs/common';
import type { DiscoveredHandler } from '../discovery/discovered-handler';

/** RabbitMQ's `consumer_timeout` when the broker's configuration does not set it. */
export const RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS = 30 * 60_000;

/**
 * Warns at boot about handlers whose deliveries can wait longer than RabbitMQ's default
 * `consumer_timeout` before they are acknowledged. The broker hands a handler up to `prefetch` messages,
 * `concurrency` of them run at once, and each call may take up to `timeoutMs`: the last one in hand may be
 * acknowledged only after ⌈prefetch ÷ concurrency⌉ × `timeoutMs` (more with the inbox: a commit on its
 * way when the timeout passes is waited for, and on SQLite inbox calls take turns). Past the broker's
 * timeout, which counts
 * from the delivery, RabbitMQ closes the consumer's channel and delivers every unacknowledged message
 * again (the calls running then are repeated).
 */
export function warnIfDeliveriesCanOutwaitConsumerTimeout(handlers: readonly DiscoveredHandler[], logger: Logger): void {
  for (const handler of handlers) {
    const rounds = Math.ceil(handler.prefetch / handler.concurrency);
    const worstMs = rounds * handler.timeoutMs;
    if (worstMs <= RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS) continue;
    const fittingRounds = Math.floor(RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS / handler.timeoutMs);
    const fix =
      fittingRounds >= 1
        ? `Give it prefetch: ${fittingRounds * handler.concurrency} (or less), a shorter timeoutMs, or raise the broker's consumer_timeout.`
        : "Give it a timeoutMs under 30 min, or raise the broker's consumer_timeout.";
    logger.warn(
      `Handler ${handler.name}: a message can wait ${Math.round(worstMs / 60_000)} min or more before it is acknowledged ` +
        `(prefetch ${handler.prefetch} ÷ concurrency ${handler.concurrency}, rounded up, × timeoutMs ${handler.timeoutMs}), longer ` +
        "than RabbitMQ's default consumer_timeout of 30 min, after which the broker closes the channel and delivers every " +
        `message in hand again. ${fix}`,
    );
  }
}
