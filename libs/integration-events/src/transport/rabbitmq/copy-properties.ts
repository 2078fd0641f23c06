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

/** The properties amqplib sends as AMQP short strings: at most 255 bytes each. */
const SHORT_STRING_PROPERTIES = ['messageId', 'contentType', 'contentEncoding', 'correlationId', 'appId', 'type', 'replyTo'] as const;

/**
 * `options` without the properties amqplib cannot encode again: a short string received from another
 * client with invalid UTF-8 is decoded with replacement characters and may no longer fit its 255 bytes;
 * a timestamp near 2^64 is decoded into a number past it. For a copy's last form, so that a message that cannot be copied whole is still copied.
 * @returns the options, and the names of the properties left out
 */
export function withEncodableProperties(options: Options.Publish): { options: Options.Publish; dropped: string[] } {
  const result: Options.Publish = { ...options };
  const dropped: string[] = [];
  for (const name of SHORT_STRING_PROPERTIES) {
    const value: unknown = result[name];
    if (value === undefined) continue;
    if (typeof value !== 'string' || Buffer.byteLength(value, 'utf8') > 255) {
      delete result[name];
      dropped.push(name);
    }
  }
  // Decoded from 64 bits into a number: near 2^64 it rounds up past what can be encoded again.
  const timestamp: unknown = result.timestamp;
  if (timestamp !== undefined && !(typeof timestamp === 'number' && Number.isSafeInteger(timestamp) && timestamp >= 0)) {
    delete result.timestamp;
    dropped.push('timestamp');
  }
  return { options: result, dropped };
}

/**
 * The `ie-dropped-headers` value of a copy that leaves out the properties `dropped`: the list the message
 * carried (only if it is one: the header comes with the message, whatever its type), then those.
 */
export function droppedHeadersWithProperties(earlier: unknown, dropped: readonly string[]): string {
  return [typeof earlier === 'string' ? earlier : '', ...dropped.map((name) => `${name} (property)`)].filter(Boolean).join(',');
}

/**
 * Whether amqplib refused to encode a message (headers or properties it decoded but cannot encode
 * again, a table over 64 KiB), as opposed to a channel that is gone. By name: Node's Buffer writes throw
 * RangeErrors of the main realm, which `instanceof` misses in a VM context (Jest's); a closed channel
 * throws amqplib's IllegalOperationError.
 */
export function isEncodingError(error: unknown): boolean {
  const name = (error as Error | undefined)?.name;
  return name === 'RangeError' || name === 'TypeError';
}
