import type { Options } from 'amqplib';
import { MESSAGE_CONTENT_TYPE } from '../../envelope/message-headers';
import type { OutgoingMessage } from '../../envelope/outgoing-message';

/**
 * AMQP properties of an outgoing message. The `ie-*` headers are the contract; the standard AMQP
 * properties mirror them (`type`, `app_id`, `correlation_id`, `timestamp`) for tools such as the
 * management UI, and `message_id` is the message id. `headers` carries `message.headers` (the publisher
 * passes its `ReusedHeadersTable`, filled with them).
 */
export function toPublishOptions(message: OutgoingMessage, headers: Options.Publish['headers']): Options.Publish {
  return {
    messageId: message.messageId,
    contentType: MESSAGE_CONTENT_TYPE,
    contentEncoding: 'utf-8',
    persistent: true,
    mandatory: true,
    type: message.routingKey,
    appId: message.sourceService,
    correlationId: message.correlationId,
    timestamp: Math.floor(message.occurredAt.getTime() / 1000),
    headers,
  };
}
