import type { MessageProperties, Options } from 'amqplib';

/**
 * The publish options of a copy of a received message (a retry, a dead letter, a replay): the same
 * message id and properties, persistent, with new headers. The broker's own properties (expiration,
 * delivery details) are not carried over, nor `userId`, which RabbitMQ checks against the publishing
 * connection's user.
 */
export function copyProperties(properties: MessageProperties, headers: Record<string, unknown>): Options.Publish {
  return {
    messageId: properties.messageId,
    contentType: properties.contentType,
    contentEncoding: properties.contentEncoding,
    correlationId: properties.correlationId,
    appId: properties.appId,
    type: properties.type,
    timestamp: properties.timestamp,
    priority: properties.priority,
    replyTo: properties.replyTo,
    persistent: true,
    headers,
  };
}
