import { Injectable, Logger } from '@nestjs/common';
import { DeadLetterQueueOperations } from '../../dead-letter/dead-letter-queue.operations';
import type { DiscoveredHandler } from '../../discovery/discovered-handler';
import type { OutgoingMessage } from '../../envelope/outgoing-message';
import { IntegrationEventsConfig } from '../../options/integration-events.config';
import type { ConsumerCallbacks, DeadLetterOperations, IntegrationEventTransport } from '../integration-event-transport';
import type { PublishOutcome } from '../publish-outcome';
import { RabbitMqConnection } from './rabbitmq.connection';
import { RabbitMqConsumer } from './rabbitmq.consumer';
import { RabbitMqPublisher } from './rabbitmq.publisher';

/** The RabbitMQ transport: one connection (amqplib recovery), a confirm-channel publisher, a consumer per handler. */
@Injectable()
export class RabbitMqTransport implements IntegrationEventTransport {
  private readonly logger = new Logger('IntegrationEvents:Consumer');
  private consumers: RabbitMqConsumer[] = [];
  readonly deadLetters: DeadLetterOperations;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly connection: RabbitMqConnection,
    private readonly publisher: RabbitMqPublisher,
  ) {
    this.deadLetters = new DeadLetterQueueOperations(() => this.connection.openChannel());
  }

  get description(): string {
    return `RabbitMQ at ${this.config.options.rabbitmq?.redactedUrl ?? '?'}`;
  }

  enablePublishing(): void {
    this.publisher.register();
  }

  startConsumers(handlers: readonly DiscoveredHandler[], callbacks: ConsumerCallbacks): void {
    this.consumers = handlers.map((handler) => {
      const consumer = new RabbitMqConsumer(handler, this.connection, callbacks, this.config.options);
      consumer.start();
      this.logger.log(`${handler.name} consumes "${handler.event.name}" v${handler.event.version} from ${handler.queue}`);
      return consumer;
    });
  }

  connect(): Promise<void> {
    return this.connection.connect();
  }

  onReady(listener: () => void): void {
    this.connection.onConnected = listener;
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

  close(): Promise<void> {
    return this.connection.close();
  }

  get attachedConsumers(): number {
    return this.consumers.filter((consumer) => consumer.isAttached).length;
  }

  get isConnected(): boolean {
    return this.connection.isConnected;
  }
}
