import { Injectable } from '@nestjs/common';
import { CqrsHandlersReady } from '../cqrs/cqrs-handlers-ready';
import type { DiscoveredHandler } from '../discovery/discovered-handler';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { waitQueueName } from '../transport/rabbitmq/handler-topology';
import { TransportHost } from '../transport/transport-host';
import { MessageDispatcher } from './message-dispatcher';

/** A handler and the queues it owns. */
export interface HandlerQueues {
  /** Class name of the handler. */
  readonly name: string;
  readonly eventName: string;
  /** The version of the event the handler takes (`@IntegrationEvent({ version })` of its class). */
  readonly eventVersion: number;
  readonly queue: string;
  readonly deadLetterQueue: string;
  /** One per retry tier (RabbitMQ only; the in-process broker holds delayed copies itself). */
  readonly waitQueues: readonly string[];
}

/** The consumers of this service: one per discovered handler, on the chosen transport. */
@Injectable()
export class IntegrationEventConsumers {
  private handlerList: readonly DiscoveredHandler[] = [];
  private started = false;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly transports: TransportHost,
    private readonly dispatcher: MessageDispatcher,
    private readonly cqrs: CqrsHandlersReady,
  ) {}

  /** Starts a consumer per handler; they subscribe when the transport connects. */
  start(handlers: readonly DiscoveredHandler[]): void {
    this.handlerList = handlers;
    this.started = true;
    this.transports.transport.startConsumers(handlers, {
      // Deliveries that come before CqrsModule has registered its handlers (see CqrsHandlersReady) wait.
      dispatch: (handler, message, signal) => {
        const cqrsReady = this.cqrs.whenReady(signal);
        if (!cqrsReady) return this.dispatcher.dispatch(handler, message, signal);
        return cqrsReady.then(() => this.dispatcher.dispatch(handler, message, signal));
      },
      placed: (handler, disposition) => this.dispatcher.placed(handler, disposition),
    });
  }

  /** The handlers being consumed for, with every queue each one declares. */
  get handlers(): readonly HandlerQueues[] {
    const rabbitMq = this.config.options.rabbitmq !== undefined;
    return this.handlerList.map((handler) => ({
      name: handler.name,
      eventName: handler.event.name,
      eventVersion: handler.event.version,
      queue: handler.queue,
      deadLetterQueue: handler.deadLetterQueue,
      waitQueues: rabbitMq ? handler.retryPolicy.tiers().map((tier) => waitQueueName(handler.queue, tier)) : [],
    }));
  }

  /** @internal The classes this application's handlers of that event version rebuild its messages as. */
  eventClassesOf(eventName: string, eventVersion: number): Function[] {
    return [...new Set(this.handlerList.filter((handler) => handler.event.name === eventName && handler.event.version === eventVersion).map((handler) => handler.eventClass))];
  }

  /** Whether the consumers run: started, and not stopped (at shutdown). */
  get running(): boolean {
    return this.started;
  }

  /** Number of handlers, and how many of them are subscribed right now. */
  get status(): { handlers: number; attached: number } {
    return { handlers: this.handlerList.length, attached: this.started ? this.transports.transport.attachedConsumers : 0 };
  }

  /**
   * Stops every consumer, each waiting for its handlers in flight (see `consumer.shutdownTimeoutMs`).
   * Safe to call more than once.
   */
  async stop(): Promise<void> {
    // A second call while the first still drains (an application's own drain, then app.close()) waits for
    // that drain: the connections must not close under the handlers still in it.
    if (!this.started) return this.stopping;
    this.started = false;
    this.stopping = this.transports.transport.stopConsumers(this.config.options.consumer.shutdownTimeoutMs);
    await this.stopping;
  }

  /** The drain of the last `stop()`, for a second call made while it runs. */
  private stopping: Promise<void> | undefined;
}
