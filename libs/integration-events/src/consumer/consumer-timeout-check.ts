import type { Logger } from '@nestjs/common';
import type { DiscoveredHandler } from '../discovery/discovered-handler';

/** RabbitMQ's `consumer_timeout` when the broker's configuration does not set it. */
export const RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS = 30 * 60_000;

/** What, besides a handler's own `timeoutMs`, can hold one of its call slots. */
export interface SlotHolds {
  /** `relay.confirmTimeoutMs`: the wait for a retry or dead-letter copy's confirm. */
  readonly confirmTimeoutMs: number;
  /** Whether `consumer.onDeadLetter` is set: after a dead-lettering it runs, up to the handler's `timeoutMs`. */
  readonly deadLetterHook: boolean;
}

/**
 * Warns at boot about handlers whose deliveries can wait longer than RabbitMQ's default
 * `consumer_timeout` before they are acknowledged. The broker hands a handler up to `prefetch` messages,
 * `concurrency` of them run at once, and a call slot is held by the call (up to `timeoutMs`), then for a
 * failed one by its copy's confirm (up to `relay.confirmTimeoutMs`) and, once its dead letter is placed
 * and acknowledged, by the `onDeadLetter` hook (up to `timeoutMs` again). The last message in hand may
 * wait for ⌈prefetch ÷ concurrency⌉ − 1 such holds before its call starts, then for its own call and
 * copy (more with the inbox: a commit on its way when the timeout passes is waited for, and on SQLite
 * inbox calls take turns). Past the broker's timeout, which counts from the delivery, RabbitMQ closes
 * the consumer's channel and delivers every unacknowledged message again (the calls running then are
 * repeated).
 */
export function warnIfDeliveriesCanOutwaitConsumerTimeout(handlers: readonly DiscoveredHandler[], holds: SlotHolds, logger: Logger): void {
  for (const handler of handlers) {
    const rounds = Math.ceil(handler.prefetch / handler.concurrency);
    const ownMs = handler.timeoutMs + holds.confirmTimeoutMs;
    const hookMs = holds.deadLetterHook ? handler.timeoutMs : 0;
    const slotMs = ownMs + hookMs;
    const worstMs = (rounds - 1) * slotMs + ownMs;
    if (worstMs <= RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS) continue;
    const fittingRounds = ownMs > RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS ? 0 : Math.floor((RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS - ownMs) / slotMs) + 1;
    const fix =
      fittingRounds >= 1
        ? `Give it prefetch: ${fittingRounds * handler.concurrency} (or less), a shorter timeoutMs, or raise the broker's consumer_timeout.`
        : "Give it a shorter timeoutMs, or raise the broker's consumer_timeout.";
    const hold = [`timeoutMs ${handler.timeoutMs}`, `relay.confirmTimeoutMs ${holds.confirmTimeoutMs} for a copy`];
    if (hookMs > 0) hold.push(`timeoutMs ${handler.timeoutMs} for the onDeadLetter hook`);
    logger.warn(
      `Handler ${handler.name}: a message can wait ${Math.round(worstMs / 60_000)} min or more before it is acknowledged ` +
        `(prefetch ${handler.prefetch} ÷ concurrency ${handler.concurrency}, rounded up, less one: ${rounds - 1} call slot hold(s) ` +
        `of ${slotMs} ms (${hold.join(' + ')}) before its call starts, then ${ownMs} ms for its call and copy), longer than ` +
        "RabbitMQ's default consumer_timeout of 30 min, after which the broker closes the channel and delivers every " +
        `message in hand again. ${fix}`,
    );
  }
}
