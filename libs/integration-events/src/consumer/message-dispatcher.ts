import { Injectable, Logger } from '@nestjs/common';
import { MessageHeaders } from '../envelope/message-headers';
import type { DiscoveredHandler } from '../discovery/discovered-handler';
import { CorrelationContext } from '../correlation/correlation.context';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import type { Disposition } from './disposition';
import type { IncomingMessage } from './incoming-message';
import type { IntegrationEventContext } from './integration-event-context.interface';
import { decodeMessage } from './message-decoder';

/**
 * Turns one delivery into one handler call, whatever the transport: decode and check the message,
 * build the context, call `handle()`, and say what to do with the message. Never throws: every
 * outcome, a handler's exception included, becomes a `Disposition`.
 */
@Injectable()
export class MessageDispatcher {
  private readonly logger = new Logger('IntegrationEvents:Consumer');

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly correlation: CorrelationContext,
  ) {}

  async dispatch(handler: DiscoveredHandler, message: IncomingMessage, signal: AbortSignal): Promise<Disposition> {
    const { consumer } = this.config.options;
    const decoded = await decodeMessage(handler, message, consumer);
    if (!decoded.ok) {
      this.logger.warn(`Rejected message ${describeId(message.messageId)} on ${handler.queue}: ${decoded.reason}`);
      return { action: 'reject', reason: decoded.reason, poison: true };
    }

    const context: IntegrationEventContext = {
      messageId: decoded.messageId,
      eventName: decoded.eventName,
      eventVersion: decoded.eventVersion,
      occurredAt: decoded.occurredAt,
      sourceService: stringHeader(message.headers[MessageHeaders.SourceService]),
      correlationId: stringHeader(message.headers[MessageHeaders.CorrelationId]),
      causationId: stringHeader(message.headers[MessageHeaders.CausationId]),
      attempt: 1,
      redelivered: message.redelivered,
      headers: message.headers,
      queue: handler.queue,
      signal,
    };
    try {
      // The handler runs in a context of its own (nestjs-cls), carrying the flow's correlation id and this
      // message as the cause: whatever it publishes continues the flow. @Transactional() works inside it.
      await this.correlation.run({ correlationId: context.correlationId ?? context.messageId, causationId: context.messageId }, () =>
        handler.instance.handle(decoded.event, context),
      );
      return { action: 'ack' };
    } catch (error) {
      const reason = error instanceof Error ? `${error.name}: ${error.message}` : `non-Error thrown: ${String(error)}`;
      this.logger.error(`Handler ${handler.name} failed for message ${decoded.messageId}: ${reason}`);
      return { action: 'reject', reason, poison: false, error };
    }
  }
}

function stringHeader(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function describeId(messageId: unknown): string {
  return typeof messageId === 'string' ? messageId.slice(0, 200) : '(no message_id)';
}
