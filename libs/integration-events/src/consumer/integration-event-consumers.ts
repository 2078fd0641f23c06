import { Injectable, Logger } from '@nestjs/common';
import type { DiscoveredHandler } from '../discovery/discovered-handler';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { RabbitMqConnection } from '../transport/rabbitmq/rabbitmq.connection';
import { RabbitMqConsumer } from '../transport/rabbitmq/rabbitmq.consumer';
import { waitQueueName } from '../transport/rabbitmq/handler-topology';
import { MessageDispatcher } from './message-dispatcher';

/** A handler and the queues it owns. */
export interface HandlerQueues {
  /** Class name of the handler. */
  readonly name: string;
  readonly eventName: string;
  readonly queue: string;
  readonly deadLetterQueue: string;
  /** One per retry tier. */
  readonly waitQueues: readonly string[];
}

/** The consumers of this service: one per discovered handler. */
@Injectable()
export class IntegrationEventConsumers {
  private readonly logger = new Logger('IntegrationEvents:Consumer');
  private consumers: RabbitMqConsumer[] = [];
  /** Consumers that were stopped (kept so `handlers` still answers during shutdown). */
  private stopped: RabbitMqConsumer[] = [];

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly connection: RabbitMqConnection,
    private readonly dispatcher: MessageDispatcher,
  ) {}

  /** Registers a consumer per handler; they subscribe when the connection opens. */
  start(handlers: readonly DiscoveredHandler[]): void {
    this.consumers = handlers.map((handler) => {
      const consumer = new RabbitMqConsumer(handler, this.connection, this.dispatcher, this.config.options);
      consumer.start();
      this.logger.log(`${handler.name} consumes "${handler.event.name}" v${handler.event.version} from ${handler.queue}`);
      return consumer;
    });
  }

  /** The handlers being consumed for, with every queue each one declares. */
  get handlers(): readonly HandlerQueues[] {
    return [...this.consumers, ...this.stopped].map(({ handler }) => ({
      name: handler.name,
      eventName: handler.event.name,
      queue: handler.queue,
      deadLetterQueue: handler.deadLetterQueue,
      waitQueues: handler.retryPolicy.tiers().map((tier) => waitQueueName(handler.queue, tier)),
    }));
  }

  /** Number of handlers, and how many of them are subscribed right now. */
  get status(): { handlers: number; attached: number } {
    return { handlers: this.consumers.length, attached: this.consumers.filter((c) => c.isAttached).length };
  }

  /**
   * Stops every consumer, each waiting for its handlers in flight (see `consumer.shutdownTimeoutMs`).
   * Safe to call more than once.
   */
  async stop(): Promise<void> {
    const consumers = this.consumers;
    this.stopped = consumers;
    this.consumers = [];
    const timeout = this.config.options.consumer.shutdownTimeoutMs;
    await Promise.all(consumers.map((consumer) => consumer.stop(timeout)));
  }
}
