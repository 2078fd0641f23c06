import { Injectable, Logger } from '@nestjs/common';
import { DeadLetterQueueOperations } from '../../dead-letter/dead-letter-queue.operations';
import type { DiscoveredHandler } from '../../discovery/discovered-handler';
import type { OutgoingMessage } from '../../envelope/outgoing-message';
import { IntegrationEventsConfig } from '../../options/integration-events.config';
import type { ConsumerCallbacks, DeadLetterOperations, IntegrationEventTransport } from '../integration-event-transport';
import type { PublishOutcome } from '../publish-outcome';
import { RabbitMqConnection, RabbitMqPublishingConnection } from './rabbitmq.connection';
import { RabbitMqConsumer } from './rabbitmq.consumer';
import { RabbitMqPublisher } from './rabbitmq.publisher';

/**
 * The RabbitMQ transport: a consuming and a publishing connection (amqplib recovery; see
 * `RabbitMqConnection` for why two), a confirm-channel publisher, a consumer per handler.
 */
@Injectable()
export class RabbitMqTransport implements IntegrationEventTransport {
  private readonly logger = new Logger('IntegrationEvents:Consumer');
  private consumers: RabbitMqConsumer[] = [];
  readonly deadLetters: DeadLetterOperations;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly connection: RabbitMqConnection,
    private readonly publishing: RabbitMqPublishingConnection,
    private readonly publisher: RabbitMqPublisher,
  ) {
    // A requeue publishes: on the publishing connection, so an alarm never blocks the consumers. Reading
    // (list, show, purge) goes on the consuming connection when there is one: an alarm never blocks it.
    this.deadLetters = new DeadLetterQueueOperations(
      () => this.publishing.openChannel(),
      () => (this.connection.isInUse && this.connection.isConnected ? this.connection : this.publishing).openChannel(),
      {
        // Read when used: the options are resolved (and a bad one refused) at bootstrap, not while providers are built.
        get confirmTimeoutMs() {
          return config.options.relay.confirmTimeoutMs;
        },
        isBlocked: () => this.publishing.isBlocked,
      },
    );
  }

  get description(): string {
    return `RabbitMQ at ${this.config.options.rabbitmq?.redactedUrl ?? '?'}`;
  }

  enablePublishing(): void {
    this.publisher.register();
  }

  startConsumers(handlers: readonly DiscoveredHandler[], callbacks: ConsumerCallbacks): void {
    this.consumers = handlers.map((handler) => {
      const consumer = new RabbitMqConsumer(handler, this.connection, this.publishing, callbacks, this.config.options);
      consumer.start();
      this.logger.log(`${handler.name} consumes "${handler.event.name}" v${handler.event.version} from ${handler.queue}`);
      return consumer;
    });
  }

  /**
   * Connects the consuming connection first (when there are handlers), so that on a first boot their
   * queues and bindings exist before anything is published, then the publishing one; only then do the
   * consumers subscribe, so that no handler runs in an application whose boot fails.
   */
  async connect(): Promise<void> {
    if (this.connection.isInUse) await this.connection.connect();
    try {
      await this.publishing.connect();
    } catch (error) {
      // Boot fails (a connection limit reached, say): the consumers must not go on in a failed application.
      await this.connection.close();
      throw error;
    }
    await Promise.all(this.consumers.map((consumer) => consumer.subscribe()));
  }

  onReady(listener: () => void): void {
    // The publisher is ready once both have set up their channels, whichever comes last.
    this.connection.onConnected = listener;
    this.publishing.onConnected = listener;
  }

  get canPublish(): boolean {
    return this.publisher.isReady;
  }

  publish(messages: readonly OutgoingMessage[]): Promise<PublishOutcome[]> {
    return this.publisher.publish(messages);
  }

  async stopConsumers(timeoutMs: number): Promise<void> {
    const consumers = this.consumers;
    this.consumers = [];
    await Promise.all(consumers.map((consumer) => consumer.stop(timeoutMs)));
  }

  async close(): Promise<void> {
    await Promise.all([this.connection.close(), this.publishing.close()]);
  }

  get attachedConsumers(): number {
    return this.consumers.filter((consumer) => consumer.isAttached).length;
  }

  get isConnected(): boolean {
    return this.publishing.isConnected && (!this.connection.isInUse || this.connection.isConnected);
  }
}
