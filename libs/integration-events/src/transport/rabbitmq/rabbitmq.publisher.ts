import { Injectable, Logger } from '@nestjs/common';
import type { ConfirmChannel, Message } from 'amqplib';
import type { OutgoingMessage } from '../../envelope/outgoing-message';
import { TransportNotReadyError } from '../../errors/transport-not-ready.error';
import { IntegrationEventsConfig } from '../../options/integration-events.config';
import { WakeSignal } from '../../relay/wake-signal';
import type { PublishOutcome } from '../publish-outcome';
import type { ManagedChannel } from './managed-channel';
import { RabbitMqConnection, RabbitMqPublishingConnection } from './rabbitmq.connection';
import { toPublishOptions } from './rabbitmq-message.mapper';
import { ReusedHeadersTable } from './reused-headers-table';

/**
 * Publishes to the topic exchange on a confirm channel, with a window of unconfirmed messages: many
 * messages travel per round trip, and a message counts as delivered only when the broker confirmed
 * it. Messages are `mandatory`: RabbitMQ returns one no queue is bound for, then confirms it anyway,
 * so a return seen before the confirm turns that confirm into `unroutable`.
 */
@Injectable()
export class RabbitMqPublisher {
  private readonly logger = new Logger('IntegrationEvents:Publisher');
  private channel: ManagedChannel | undefined;
  /** Message ids the broker returned, waiting for their confirm. */
  private readonly returned = new Map<string, string>();
  private unconfirmed = 0;
  private readonly windowWaiters: Array<() => void> = [];
  /** The headers of every message, refilled just before its `channel.publish()` (no await between). */
  private readonly headers = new ReusedHeadersTable();

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly connection: RabbitMqPublishingConnection,
    private readonly consuming: RabbitMqConnection,
    private readonly wakeSignal: WakeSignal,
  ) {}

  /** Registers the publishing channel; it opens with the connection. */
  register(): void {
    const { exchange } = this.config.options.rabbitmq!;
    this.channel = this.connection.manage({
      name: 'publisher',
      setup: async (channel) => {
        channel.on('return', (message: Message) => this.onReturn(message));
        await channel.assertExchange(exchange, 'topic', { durable: true });
        // Rows may have piled up while there was no channel: let the relay look as soon as it is open.
        setImmediate(() => this.wakeSignal.notify());
      },
    });
  }

  /**
   * True when a publishing channel is open, the broker is not blocking publishes, and the consuming
   * connection (if the service has handlers) has tried its channels, so that this service's own queues
   * and bindings exist before it publishes.
   */
  get isReady(): boolean {
    return (
      this.channel?.current !== undefined &&
      this.connection.isConnected &&
      !this.connection.isBlocked &&
      (!this.consuming.isInUse || this.consuming.isConnected)
    );
  }

  /**
   * Publishes the messages in order and waits for every confirm. The whole batch (window waits, socket
   * back-pressure and confirms) has `relay.confirmTimeoutMs`; what is not confirmed by then counts as
   * failed, so a batch can never outlive the lease of its rows.
   * @returns one outcome per message, in order
   * @throws TransportNotReadyError when no channel is open (nothing was sent)
   */
  async publish(messages: readonly OutgoingMessage[]): Promise<PublishOutcome[]> {
    const channel = this.channel?.current;
    if (!channel) throw new TransportNotReadyError();
    const { relay } = this.config.options;
    const rabbitmq = this.config.options.rabbitmq!;
    // Monotonic: a wall clock stepped back must not stretch a batch past its rows' lease.
    const deadline = performance.now() + relay.confirmTimeoutMs;
    const outcomes: Array<Promise<PublishOutcome>> = [];

    let index = 0;
    let closing = false;
    for (; index < messages.length; index++) {
      if (closing) break;
      if (this.unconfirmed >= relay.maxUnconfirmed && !(await this.windowSlot(deadline))) break;
      if (this.channel?.current !== channel) break;
      const message = messages[index]!;
      this.unconfirmed++;
      let writable = true;
      outcomes.push(
        new Promise<PublishOutcome>((resolve) => {
          try {
            const options = toPublishOptions(message, this.headers.fill(message.headers));
            writable = channel.publish(rabbitmq.exchange, message.routingKey, message.body, options, (error) => {
              this.releaseSlot();
              resolve(this.outcomeOf(message.messageId, error));
            });
          } catch (error) {
            // amqplib throws synchronously when the channel is already closed (nothing was sent: not an
            // attempt) or a frame cannot be encoded (it fails the same way each time: an attempt).
            this.releaseSlot();
            const reason = (error as Error).message;
            if ((error as Error | undefined)?.name !== 'IllegalOperationError') return resolve({ status: 'failed', reason });
            // The channel is closing (amqplib closed it on an error, and waits for the broker's answer):
            // let it go now, so that the relay waits for a fresh one instead of claiming the rows again
            // onto this one, and send nothing more of the batch on it.
            closing = true;
            if (this.channel?.current === channel) this.channel?.recycle();
            resolve({ status: 'unsent', reason });
          }
        }),
      );
      if (!writable && !(await this.drained(channel, deadline))) {
        index++;
        break;
      }
    }
    for (; index < messages.length; index++) {
      outcomes.push(Promise.resolve({ status: 'unsent', reason: 'not sent: the channel closed or the batch ran out of time before its turn' }));
    }
    return this.settleBy(outcomes, deadline, relay.confirmTimeoutMs);
  }

  private outcomeOf(messageId: string, error: unknown): PublishOutcome {
    const returnedReason = this.returned.get(messageId);
    this.returned.delete(messageId);
    if (error) return { status: 'failed', reason: error instanceof Error ? error.message : 'nacked by the broker' };
    if (returnedReason !== undefined) return { status: 'unroutable', reason: returnedReason };
    return { status: 'confirmed' };
  }

  private onReturn(message: Message): void {
    const messageId = message.properties.messageId as string | undefined;
    if (!messageId) return;
    const fields = message.fields as unknown as { replyCode?: number; replyText?: string; exchange: string; routingKey: string };
    const reason =
      `${fields.replyCode ?? 312} ${fields.replyText ?? 'NO_ROUTE'}: no queue is bound to exchange ` +
      `"${fields.exchange}" for routing key "${fields.routingKey}"`;
    this.returned.set(messageId, reason);
  }

  private async settleBy(
    outcomes: Array<Promise<PublishOutcome>>,
    deadline: number,
    timeoutMs: number,
  ): Promise<PublishOutcome[]> {
    const settled: Array<PublishOutcome | undefined> = new Array(outcomes.length);
    outcomes.forEach((outcome, index) => void outcome.then((value) => (settled[index] = value)));
    const all = Promise.all(outcomes);
    if (await this.before(all, deadline)) return all;

    // Confirms stopped coming: the channel is unhealthy. Recycling it fails the stragglers' callbacks
    // (releasing their window slots); their rows are retried. Nothing here waits on the broker.
    this.logger.warn(`No confirm within ${timeoutMs} ms; recycling the publishing channel`);
    this.channel?.recycle();
    // Array.from visits every index: `settled` has holes where no confirm came, which map() would skip.
    return Array.from(settled, (value) => value ?? { status: 'failed', reason: `no confirm within ${timeoutMs} ms` });
  }

  /** Whether `promise` settles before `deadline`. */
  private async before(promise: Promise<unknown>, deadline: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - performance.now()))));
    const result = await Promise.race([promise.then(() => true as const), timedOut]);
    clearTimeout(timer);
    return result;
  }

  /** Waits for a free slot in the confirm window; false when the deadline came first. */
  private async windowSlot(deadline: number): Promise<boolean> {
    let waiter!: () => void;
    const slot = new Promise<void>((resolve) => (waiter = resolve));
    this.windowWaiters.push(waiter);
    const got = await this.before(slot, deadline);
    if (!got) this.windowWaiters.splice(this.windowWaiters.indexOf(waiter), 1);
    return got;
  }

  private releaseSlot(): void {
    this.unconfirmed--;
    this.windowWaiters.shift()?.();
  }

  /** Waits for the socket to drain (or the channel to close); false when the deadline came first. */
  private drained(channel: ConfirmChannel, deadline: number): Promise<boolean> {
    let done!: () => void;
    const drained = new Promise<void>((resolve) => {
      done = () => {
        channel.off('drain', done);
        channel.off('close', done);
        resolve();
      };
      channel.on('drain', done);
      channel.on('close', done);
    });
    return this.before(drained, deadline).finally(done);
  }
}
