import { Logger } from '@nestjs/common';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { Disposition } from '../../consumer/disposition';
import type { MessageDispatcher } from '../../consumer/message-dispatcher';
import type { DiscoveredHandler } from '../../discovery/discovered-handler';
import type { ResolvedIntegrationEventsOptions } from '../../options/resolved-options';
import type { ManagedChannel } from './managed-channel';
import type { RabbitMqConnection } from './rabbitmq.connection';

/**
 * Consumes one handler's queue on its own channel (so one handler's prefetch and failures never touch
 * another's). Declares the queue and its binding on every (re)open, acknowledges a message only after
 * the handler resolved, and on shutdown stops taking deliveries, fires the handlers' abort signal and
 * waits for the handlers in flight before closing its channel (which returns anything unacknowledged
 * to the queue).
 */
export class RabbitMqConsumer {
  private readonly logger = new Logger('IntegrationEvents:Consumer');
  private channel: ManagedChannel | undefined;
  private consumer: { channel: ConfirmChannel; tag: string } | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private stopping = false;

  constructor(
    readonly handler: DiscoveredHandler,
    private readonly connection: RabbitMqConnection,
    private readonly dispatcher: MessageDispatcher,
    private readonly options: ResolvedIntegrationEventsOptions,
  ) {}

  /** True while the consumer is subscribed to its queue. */
  get isAttached(): boolean {
    return this.consumer !== undefined && this.consumer.channel === this.channel?.current;
  }

  /** Registers the consumer's channel; it subscribes when the connection opens. */
  start(): void {
    if (this.stopping) return;
    const { handler } = this;
    const { exchange } = this.options.rabbitmq;
    this.channel = this.connection.manage({
      name: `consumer:${handler.queue}`,
      setup: async (channel) => {
        await channel.prefetch(handler.prefetch);
        await channel.assertExchange(exchange, 'topic', { durable: true });
        await channel.assertQueue(handler.queue, {
          durable: true,
          arguments: { 'x-queue-type': this.options.consumer.queueType },
        });
        await channel.bindQueue(handler.queue, exchange, handler.event.name);
        const { consumerTag } = await channel.consume(handler.queue, (message) => this.onDelivery(channel, message), {
          noAck: false,
        });
        this.consumer = { channel, tag: consumerTag };
      },
    });
  }

  /**
   * Stops taking deliveries, fires the abort signal of running handlers, waits for them up to
   * `timeoutMs`, then closes the channel. Messages not acknowledged by then go back to the queue.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    const consumer = this.consumer;
    this.consumer = undefined;
    if (consumer) await consumer.channel.cancel(consumer.tag).catch(() => undefined);
    this.abort.abort(new Error('The application is shutting down'));
    if (this.inFlight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const result = await Promise.race([Promise.allSettled([...this.inFlight]), timedOut]);
      clearTimeout(timer);
      if (result === 'timeout') {
        this.logger.warn(
          `${this.inFlight.size} handler call(s) on ${this.handler.queue} still running after ${timeoutMs} ms; ` +
            'their messages are returned to the queue and will be delivered again',
        );
      }
    }
    if (this.channel) await this.connection.release(this.channel);
  }

  private onDelivery(channel: ConfirmChannel, message: ConsumeMessage | null): void {
    if (message === null) {
      // The broker cancelled the consumer (the queue was deleted): reopen, which re-declares the queue.
      this.logger.warn(`Queue ${this.handler.queue} cancelled our consumer (deleted?); re-declaring it`);
      if (!this.stopping) void this.channel?.recycle();
      return;
    }
    // After cancel, deliveries already on the wire are left unacknowledged: closing the channel
    // returns them to the queue for the next consumer.
    if (this.stopping) return;
    const work = this.process(channel, message).finally(() => this.inFlight.delete(work));
    this.inFlight.add(work);
  }

  private async process(channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
    const disposition = await this.dispatcher.dispatch(
      this.handler,
      {
        body: message.content,
        messageId: message.properties.messageId,
        routingKey: message.fields.routingKey,
        headers: (message.properties.headers ?? {}) as Record<string, unknown>,
        redelivered: message.fields.redelivered,
      },
      this.abort.signal,
    );
    this.settle(channel, message, disposition);
  }

  private settle(channel: ConfirmChannel, message: ConsumeMessage, disposition: Disposition): void {
    if (disposition.action !== 'ack' && this.stopping) {
      // A handler that failed while the application shuts down (its signal fired, a client it uses was
      // closed) has not really failed: leave the message unacknowledged; closing the channel returns it
      // to the queue for the next instance.
      return;
    }
    try {
      if (disposition.action === 'ack') channel.ack(message);
      // Until retries and the dead-letter queue exist, a failed message is dropped, never requeued:
      // requeueing would redeliver it at once, in a hot loop.
      else channel.nack(message, false, false);
    } catch (error) {
      // The channel closed while the handler ran; the broker redelivers the message.
      this.logger.warn(`Could not settle message ${String(message.properties.messageId)}: ${(error as Error).message}`);
    }
  }
}
