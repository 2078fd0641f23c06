import { Injectable, Logger } from '@nestjs/common';
import type { DiscoveredHandler } from '../discovery/discovered-handler';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { RabbitMqConnection } from '../transport/rabbitmq/rabbitmq.connection';
import { RabbitMqConsumer } from '../transport/rabbitmq/rabbitmq.consumer';
import { MessageDispatcher } from './message-dispatcher';

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

  /** The handlers being consumed for, with their queues. */
  get handlers(): ReadonlyArray<{ readonly name: string; readonly queue: string; readonly eventName: string }> {
    return [...this.consumers, ...this.stopped].map(({ handler }) => ({ name: handler.name, queue: handler.queue, eventName: handler.event.name }));
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
