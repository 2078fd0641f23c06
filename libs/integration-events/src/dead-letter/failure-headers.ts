import type { Disposition } from '../consumer/disposition';
import { FAILURE_HEADERS, MessageHeaders } from '../envelope/message-headers';
import type { DeadLetter } from './dead-letter.interface';

type Headers = Readonly<Record<string, unknown>>;
type RetryDisposition = Extract<Disposition, { action: 'retry' }>;
type DeadLetterDisposition = Extract<Disposition, { action: 'dead-letter' }>;

/**
 * Headers RabbitMQ sets on a message as it moves (dead-lettering, quorum-queue redeliveries, federation):
 * they describe that trip, not the message. Other `x-` headers are an application's (another publisher's
 * `x-tenant-id`, say) and travel with every copy.
 */
function isBrokerHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return (
    lower === 'x-death' ||
    lower.startsWith('x-first-death-') ||
    lower.startsWith('x-last-death-') ||
    lower === 'x-delivery-count' ||
    lower === 'x-received-from'
  );
}

/** The headers a message arrived with, minus the broker's own (`x-death` and friends). */
function withoutBrokerHeaders(headers: Headers): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) if (!isBrokerHeader(name)) result[name] = value;
  return result;
}

/**
 * The event's name for a copy, when the original named it only by its routing key (another publisher):
 * a copy comes back to the handler's queue with the queue as routing key, so it must carry the name.
 */
function eventNameHeader(headers: Headers, eventName: string | undefined): Record<string, unknown> {
  return headers[MessageHeaders.EventName] === undefined && eventName !== undefined ? { [MessageHeaders.EventName]: eventName } : {};
}

/**
 * Smaller forms of a copy's headers, for a copy amqplib cannot encode: its header table takes at most
 * 64 KiB, and another publisher's client may have sent more than that, or close to it. First the
 * failure's stack goes and its message is cut to 200 characters; then the application's headers go
 * too: only the library's own (`ie-*`) remain, and `ie-dropped-headers` names what was left out. The
 * message itself (its body) is always kept: in the handler's queue again, or in its dead-letter queue.
 */
export function smallerCopyHeaders(headers: Headers): Array<Record<string, unknown>> {
  const compact: Record<string, unknown> = { ...headers };
  delete compact[MessageHeaders.ErrorStack];
  for (const name of [MessageHeaders.ErrorMessage, MessageHeaders.LastError]) {
    const value = compact[name];
    if (typeof value === 'string' && value.length > 200) compact[name] = `${value.slice(0, 199)}…`;
  }
  const libraryOnly: Record<string, unknown> = {};
  const dropped: string[] = [];
  for (const [name, value] of Object.entries(compact)) {
    if (name.toLowerCase().startsWith('ie-')) libraryOnly[name] = value;
    else dropped.push(name);
  }
  const droppedList = dropped.join(',');
  libraryOnly[MessageHeaders.DroppedHeaders] = droppedList.length > 1_000 ? `${droppedList.slice(0, 999)}…` : droppedList;
  return [compact, libraryOnly];
}

function firstFailureAt(headers: Headers, failedAt: Date): string {
  const earlier = headers[MessageHeaders.FirstFailureAt];
  return typeof earlier === 'string' && !Number.isNaN(Date.parse(earlier)) ? earlier : failedAt.toISOString();
}

/** Headers of the copy that waits for the next attempt: the original ones, plus where the failures stand. */
export function retryCopyHeaders(headers: Headers, retry: RetryDisposition): Record<string, unknown> {
  return {
    ...withoutBrokerHeaders(headers),
    ...eventNameHeader(headers, retry.eventName),
    [MessageHeaders.Attempt]: retry.nextAttempt,
    [MessageHeaders.FirstFailureAt]: firstFailureAt(headers, retry.failure.failedAt),
    [MessageHeaders.LastFailureAt]: retry.failure.failedAt.toISOString(),
    [MessageHeaders.LastError]: `${retry.failure.name}: ${retry.failure.message}`,
  };
}

/** Headers of the dead-lettered copy: the original ones plus everything an operator needs to decide. */
export function deadLetterHeaders(
  headers: Headers,
  deadLetter: DeadLetterDisposition,
  handler: { readonly name: string; readonly queue: string },
): Record<string, unknown> {
  const failedAt = deadLetter.failure.failedAt;
  const result: Record<string, unknown> = {
    ...withoutBrokerHeaders(headers),
    ...eventNameHeader(headers, deadLetter.eventName),
    [MessageHeaders.DeadLetterReason]: deadLetter.reason,
    [MessageHeaders.Attempts]: deadLetter.attempts,
    [MessageHeaders.FirstFailureAt]: firstFailureAt(headers, failedAt),
    [MessageHeaders.LastFailureAt]: failedAt.toISOString(),
    [MessageHeaders.ErrorName]: deadLetter.failure.name,
    [MessageHeaders.ErrorMessage]: deadLetter.failure.message,
    [MessageHeaders.Handler]: handler.name,
    [MessageHeaders.Queue]: handler.queue,
    [MessageHeaders.DeadLetteredAt]: new Date().toISOString(),
  };
  if (deadLetter.failure.stack) result[MessageHeaders.ErrorStack] = deadLetter.failure.stack;
  delete result[MessageHeaders.LastError];
  return result;
}

/**
 * Headers of a dead letter sent back to its queue: the failure headers go, so the message keeps its id
 * and starts its attempts afresh.
 */
export function requeuedHeaders(headers: Headers): Record<string, unknown> {
  const result = withoutBrokerHeaders(headers);
  for (const name of FAILURE_HEADERS) delete result[name];
  return result;
}

/** What the `onDeadLetter` hook is given. */
export function toDeadLetter(
  deadLetter: DeadLetterDisposition,
  headers: Record<string, unknown>,
  body: Buffer,
  handler: { readonly name: string; readonly queue: string; readonly deadLetterQueue: string },
): DeadLetter {
  return {
    messageId: deadLetter.messageId,
    eventName: deadLetter.eventName,
    eventVersion: deadLetter.eventVersion,
    queue: handler.queue,
    deadLetterQueue: handler.deadLetterQueue,
    handler: handler.name,
    reason: deadLetter.reason,
    attempts: deadLetter.attempts,
    firstFailureAt: new Date(String(headers[MessageHeaders.FirstFailureAt])),
    lastFailureAt: deadLetter.failure.failedAt,
    error: { name: deadLetter.failure.name, message: deadLetter.failure.message, stack: deadLetter.failure.stack },
    headers,
    body,
  };
}
