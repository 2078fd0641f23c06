import { printable, printableId } from '../../util/printable';
import { Logger } from '@nestjs/common';
import { unlimitedAbortController } from '../../util/unlimited-abort-controller';
import type { Disposition } from '../../consumer/disposition';
import { callDeadLetterHook } from '../../dead-letter/dead-letter-hook';
import { deadLetterHeaders, retryCopyHeaders, toDeadLetter } from '../../dead-letter/failure-headers';
import type { DiscoveredHandler } from '../../discovery/discovered-handler';
import type { OutgoingMessage } from '../../envelope/outgoing-message';
import type { ResolvedIntegrationEventsOptions } from '../../options/resolved-options';
import type { ConsumerCallbacks, DeadLetterOperations, IntegrationEventTransport } from '../integration-event-transport';
import type { PublishOutcome } from '../publish-outcome';
import type { InProcessBroker } from './in-process-broker';
import { InProcessDeadLetters } from './in-process-dead-letters';
import type { InProcessMessage } from './in-process-message';
import type { InProcessDelivery } from './in-process-queue';
import { RETURN_TO_QUEUE_PAUSE_MS } from '../return-to-queue-pause';

/** A delivery being handled; `copied` once its dead letter is in its queue (only the ack is left). */
interface HeldDelivery {
  readonly delivery: InProcessDelivery;
  copied: boolean;
}

interface Consumer {
  readonly handler: DiscoveredHandler;
  cancel: (() => void) | undefined;
  /** Each call in progress, with its delivery (settled by shutdown if it gives up on the call). */
  readonly inFlight: Map<Promise<void>, HeldDelivery>;
  readonly abort: AbortController;
  stopping: boolean;
}

/**
 * The transport over an `InProcessBroker`, with the RabbitMQ transport's semantics: each handler has its
 * own queue bound by the event name, and its own dead-letter queue; a failed attempt is retried by a copy
 * with the next `ie-attempt` that the broker holds for the backoff delay; the last failure (or a poison
 * message) goes to the dead-letter queue with the same failure headers and the `onDeadLetter` hook;
 * unroutable messages are reported to the relay; competing consumers share a queue.
 */
export class InProcessTransport implements IntegrationEventTransport {
  private readonly logger = new Logger('IntegrationEvents:Consumer');
  private consumers: Consumer[] = [];
  private readyListener: (() => void) | undefined;
  private connected = false;
  readonly deadLetters: DeadLetterOperations;
  readonly description = 'the in-process broker';

  constructor(
    private readonly broker: InProcessBroker,
    private readonly exchange: string,
    private readonly options: ResolvedIntegrationEventsOptions,
  ) {
    this.deadLetters = new InProcessDeadLetters(broker);
  }

  enablePublishing(): void {}

  startConsumers(handlers: readonly DiscoveredHandler[], callbacks: ConsumerCallbacks): void {
    for (const handler of handlers) {
      this.broker.bind(this.exchange, handler.event.name, handler.queue);
      this.broker.queue(handler.deadLetterQueue);
      const consumer: Consumer = { handler, cancel: undefined, inFlight: new Map(), abort: unlimitedAbortController(), stopping: false };
      consumer.cancel = this.broker
        .queue(handler.queue)
        // In process a delivery costs no round trip: holding more than the calls that can run buys nothing.
        .subscribe((delivery) => this.onDelivery(consumer, delivery, callbacks), handler.concurrency);
      this.consumers.push(consumer);
      this.logger.log(`${handler.name} consumes "${handler.event.name}" v${handler.event.version} from ${handler.queue} (in-process)`);
    }
  }

  async connect(): Promise<void> {
    this.connected = true;
    this.readyListener?.();
  }

  onReady(listener: () => void): void {
    this.readyListener = listener;
  }

  get canPublish(): boolean {
    return this.connected;
  }

  async publish(messages: readonly OutgoingMessage[]): Promise<PublishOutcome[]> {
    return messages.map((message) => {
      const routed = this.broker.publish(this.exchange, {
        content: message.body,
        messageId: message.messageId,
        routingKey: message.routingKey,
        headers: { ...message.headers },
        properties: { correlationId: message.correlationId, appId: message.sourceService, contentType: 'application/json' },
        redelivered: false,
      });
      return routed
        ? { status: 'confirmed' }
        : { status: 'unroutable', reason: `no queue is bound to exchange "${this.exchange}" for routing key "${message.routingKey}"` };
    });
  }

  async stopConsumers(timeoutMs: number): Promise<void> {
    const consumers = this.consumers;
    this.consumers = [];
    await Promise.all(
      consumers.map(async (consumer) => {
        consumer.stopping = true;
        consumer.cancel?.();
        consumer.cancel = undefined;
        consumer.abort.abort(new Error('The application is shutting down'));
        if (consumer.inFlight.size === 0) return;
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)));
        await Promise.race([Promise.allSettled([...consumer.inFlight.keys()]), timedOut]);
        clearTimeout(timer);
        // As RabbitMQ does when a channel closes: the calls still running lose their messages to the
        // queue, for another instance (or the next start); a late settle is then a no-op. A message
        // whose dead letter is placed (its onDeadLetter hook still running) is done: acked.
        for (const held of consumer.inFlight.values()) {
          if (held.copied) held.delivery.ack();
          else held.delivery.requeue();
        }
      }),
    );
  }

  async close(): Promise<void> {
    this.connected = false;
  }

  get attachedConsumers(): number {
    return this.consumers.filter((consumer) => consumer.cancel !== undefined).length;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  private onDelivery(consumer: Consumer, delivery: InProcessDelivery, callbacks: ConsumerCallbacks): void {
    if (consumer.stopping) {
      delivery.requeue();
      return;
    }
    const { message } = delivery;
    const held: HeldDelivery = { delivery, copied: false };
    const work = callbacks.dispatch(
      consumer.handler,
      {
        body: message.content,
        messageId: message.messageId,
        routingKey: message.routingKey,
        headers: message.headers,
        redelivered: message.redelivered,
        routed: message.exchange === this.exchange && message.routingKey === consumer.handler.event.name,
      },
      consumer.abort.signal,
    )
      .then((disposition) => this.settle(consumer, held, disposition, callbacks))
      .catch(async (error: unknown) => {
        if (consumer.stopping) this.logger.log(`Message ${printableId(message.messageId)} goes back to its queue at shutdown: ${(error as Error).message}`);
        else {
          this.logger.error(`Settling message ${printableId(message.messageId)} failed: ${(error as Error).message}`);
          // A fault of ours, as on RabbitMQ: back to its queue after a pause, not at once (a hot loop).
          // Shutdown cuts the pause short: it would hold app.close() for a message that only goes back.
          if (!held.copied) await pauseUnlessAborted(RETURN_TO_QUEUE_PAUSE_MS, consumer.abort.signal);
        }
        // Never back to its queue once its dead letter is placed: it would be handled twice.
        if (held.copied) delivery.ack();
        else delivery.requeue();
      })
      .finally(() => consumer.inFlight.delete(work));
    consumer.inFlight.set(work, held);
  }

  private async settle(consumer: Consumer, held: HeldDelivery, disposition: Disposition, callbacks: ConsumerCallbacks): Promise<void> {
    const { handler } = consumer;
    const { delivery } = held;
    const { message } = delivery;
    if (disposition.action === 'ack') return delivery.ack();
    if (consumer.stopping) return delivery.requeue();
    if (disposition.action === 'retry') {
      const copy: InProcessMessage = { ...message, headers: retryCopyHeaders(message.headers, disposition), redelivered: false };
      // `inProcess.maxRetryDelayMs` shortens the wait (tests); the headers keep the policy's attempt count.
      const cap = this.options.inProcess?.maxRetryDelayMs ?? Number.POSITIVE_INFINITY;
      this.broker.sendToQueueLater(handler.queue, copy, Math.min(disposition.delayMs, cap));
      delivery.ack();
      callbacks.placed(handler, disposition);
      return;
    }
    const headers = deadLetterHeaders(message.headers, disposition, handler);
    this.broker.sendToQueue(handler.deadLetterQueue, { ...message, headers, redelivered: false });
    held.copied = true;
    callbacks.placed(handler, disposition);
    this.logger.warn(
      `Dead-lettered message ${printableId(disposition.messageId)} from ${handler.queue} to ${handler.deadLetterQueue} ` +
        `(${disposition.reason}, ${disposition.attempts} attempt(s)): ${printable(`${disposition.failure.name}: ${disposition.failure.message}`)}`,
    );
    const hook = this.options.consumer.onDeadLetter;
    // The hook runs in the handler's slot (RabbitMQ's consumer holds the slot itself and acks first;
    // here the prefetch is the slot, so the ack waits for the hook).
    // Copies: on RabbitMQ the hook gets what was sent, and what it changes changes nothing placed; here the
    // stored dead letter (and the body other handlers' queues share) must not change with it either.
    if (hook) {
      await callDeadLetterHook(hook, toDeadLetter(disposition, { ...headers }, Buffer.from(message.content), handler), handler.timeoutMs, this.logger);
    }
    delivery.ack();
  }
}

/** Waits `ms`, or less when `signal` fires first. */
function pauseUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
