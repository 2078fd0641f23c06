import { MessageHeaders } from '../envelope/message-headers';
import type { DeadLetterDetails, DeadLetterSummary } from './dead-letter-queue.operations';

/** A dead letter as any transport holds it. */
export interface StoredDeadLetter {
  readonly messageId: string | undefined;
  readonly routingKey: string;
  readonly headers: Readonly<Record<string, unknown>>;
  readonly properties: Readonly<Record<string, unknown>>;
  readonly content: Buffer;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Where a requeued dead letter goes: the queue its failure headers name, else the DLQ's name without
 * `.dlq`.
 * @throws when neither tells (a message another tool put there, in a queue named otherwise), rather
 *   than send it back into the dead-letter queue itself with its failure headers gone
 */
export function requeueTarget(headers: Readonly<Record<string, unknown>>, deadLetterQueue: string, messageId: string | undefined): string {
  const named = headers[MessageHeaders.Queue];
  const target =
    typeof named === 'string' && named.length > 0 ? named : deadLetterQueue.endsWith('.dlq') ? deadLetterQueue.slice(0, -'.dlq'.length) : '';
  if (target === '' || target === deadLetterQueue) {
    throw new Error(
      `Dead letter ${messageId ?? '(no id)'} in "${deadLetterQueue}" does not say which queue it came from (no ${MessageHeaders.Queue} header, ` +
        `and the queue's name does not end in ".dlq")`,
    );
  }
  return target;
}

/**
 * A header as text, whatever its type: it comes with the message, and a table (an object, which may lack
 * a prototype or carry a `toString` that is not a function) is named by its type, never turned into a
 * string, so that one hostile dead letter cannot break the listing of its queue.
 */
function header(message: StoredDeadLetter, name: string): string | undefined {
  const value = message.headers[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  // By its internal slot: a table whose `__proto__` field was bytes passes `Buffer.isBuffer` without being any.
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
  return Array.isArray(value) ? '(an array)' : '(a table)';
}

/** One line's worth of a dead letter, from its failure headers. */
export function summarizeDeadLetter(message: StoredDeadLetter): DeadLetterSummary {
  const attempts = Number(header(message, MessageHeaders.Attempts));
  const name = header(message, MessageHeaders.ErrorName);
  const text = header(message, MessageHeaders.ErrorMessage);
  return {
    messageId: message.messageId,
    eventName: header(message, MessageHeaders.EventName) ?? message.routingKey,
    reason: header(message, MessageHeaders.DeadLetterReason),
    attempts: Number.isFinite(attempts) ? attempts : undefined,
    handler: header(message, MessageHeaders.Handler),
    queue: header(message, MessageHeaders.Queue),
    deadLetteredAt: header(message, MessageHeaders.DeadLetteredAt),
    error: name || text ? `${name ?? 'Error'}: ${text ?? ''}` : undefined,
  };
}

/** Everything about a dead letter; the body as UTF-8 text, or base64 when it is not valid UTF-8. */
export function describeDeadLetter(message: StoredDeadLetter): DeadLetterDetails {
  let body: string;
  let bodyEncoding: 'utf8' | 'base64' = 'utf8';
  try {
    body = utf8.decode(message.content);
  } catch {
    body = message.content.toString('base64');
    bodyEncoding = 'base64';
  }
  return {
    ...summarizeDeadLetter(message),
    // A copy: what the caller does with it (an admin endpoint tidying it up) must not change the stored
    // dead letter (in-process, where it is the queue's own object).
    headers: { ...message.headers },
    properties: { ...message.properties, messageId: message.messageId },
    body,
    bodyEncoding,
    errorStack: header(message, MessageHeaders.ErrorStack),
    firstFailureAt: header(message, MessageHeaders.FirstFailureAt),
  };
}
