import { Injectable } from '@nestjs/common';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { InProcessTransport } from './in-process/in-process.transport';
import type { IntegrationEventTransport } from './integration-event-transport';
import { RabbitMqTransport } from './rabbitmq/rabbitmq.transport';

/** Holds the transport the options chose: RabbitMQ (`rabbitmq`) or the in-process broker (`inProcess`). */
@Injectable()
export class TransportHost {
  private chosen: IntegrationEventTransport | undefined;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly rabbitMq: RabbitMqTransport,
  ) {}

  get transport(): IntegrationEventTransport {
    if (!this.chosen) {
      const { inProcess } = this.config.options;
      this.chosen = inProcess ? new InProcessTransport(inProcess.broker, inProcess.exchange, this.config.options) : this.rabbitMq;
    }
    return this.chosen;
  }
}
