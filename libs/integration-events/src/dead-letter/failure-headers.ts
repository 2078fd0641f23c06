import { ISO_8601_PATTERN } from '../envelope/iso-8601';
import type { Disposition } from '../consumer/disposition';
import { DEAD_LETTER_HEADERS, FAILURE_HEADERS, MessageHeaders, ROUTING_HEADERS } from '../envelope/message-headers';
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

/**
 * The headers a message arrived with, minus the broker's own (`x-death` and friends) and another
 * publisher's routing headers (`CC`: RabbitMQ keeps it on delivery, and a copy carrying it would go to
 * the queues it names too).
 */
function withoutBrokerHeaders(headers: Headers): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) if (!isBrokerHeader(name) && !ROUTING_HEADERS.has(name)) result[name] = value;
  return result;
}

/**
 * The event's name for a copy, when the original named it only by its routing key (another publisher):
 * a copy comes back to the handler's queue with the queue as routing key, so it must carry the name.
 */
function eventNameHeader(headers: Headers, eventName: string | undefined): Record<string, unknown> {
  return headers[MessageHeaders.EventName] === undefined && eventName !== undefined ? { [MessageHeaders.EventName]: eventName } : {};
}

/** The headers a copy's smallest form keeps before any other: its failure's, then the contract's and the flow's. */
const KEPT_FIRST: readonly string[] = [
  ...FAILURE_HEADERS,
  MessageHeaders.EventName,
  MessageHeaders.EventVersion,
  MessageHeaders.OccurredAt,
  MessageHeaders.SourceService,
  MessageHeaders.CorrelationId,
  MessageHeaders.CausationId,
];

/**
 * Other forms of a copy's headers, for a copy amqplib cannot encode: its header table takes at most
 * 64 KiB, and another publisher's client may have sent more than that, or close to it, or values
 * amqplib decodes but cannot encode again (a ±1e300 double, a fraction over 2^50, a nested table with a "!" key). First
 * the failure's stack goes and its message is cut to 200 characters; then the application's headers go
 * too: only the library's own (`ie-*`) remain, and `ie-dropped-headers` names what was left out; last,
 * of those only the ones amqplib surely encodes remain, within its table (see `encodedSize`), the
 * failure's and the contract's first (`KEPT_FIRST`). The message itself (its
 * body) is always kept: in the handler's queue again, or in its dead-letter queue.
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
  libraryOnly[MessageHeaders.DroppedHeaders] = droppedHeadersValue(dropped);
  const encodable: Record<string, unknown> = {};
  // Room for the dropped-headers list (at most 1,000 characters, 3 bytes each) under amqplib's 64 KiB.
  let room = 60_000;
  // The room goes first to what this copy says of itself (the failure, the contract, the flow), then to
  // the other ie-* headers another client sent: never the dead-letter reason left out for a sender's own.
  const first = KEPT_FIRST.filter((name) => name in libraryOnly);
  const rest = Object.keys(libraryOnly).filter((name) => !first.includes(name));
  for (const name of [...first, ...rest]) {
    if (name === MessageHeaders.DroppedHeaders) continue;
    const value = libraryOnly[name];
    const size = encodedSize(name, value);
    if (size !== undefined && size <= room) {
      encodable[name] = value;
      room -= size;
    } else dropped.push(name);
  }
  encodable[MessageHeaders.DroppedHeaders] = droppedHeadersValue(dropped);
  return [compact, libraryOnly, encodable];
}

function droppedHeadersValue(names: readonly string[]): string {
  const list = names.join(',');
  return list.length > 1_000 ? `${list.slice(0, 999)}…` : list;
}

/**
 * The bytes one header takes in amqplib's table, when amqplib surely encodes it: a name of at most 255
 * bytes, and a string, a boolean, a safe integer (sent as a long) or a fraction under 2^50 (a double).
 * `undefined` for anything else: a NaN or an out-of-range number (amqplib sends those as a long and
 * fails), a table or an array (a "!" key in one is taken as a type tag), a name decoded from invalid
 * UTF-8 grown past 255 bytes.
 */
function encodedSize(name: string, value: unknown): number | undefined {
  const nameBytes = Buffer.byteLength(name, 'utf8');
  if (nameBytes > 255) return undefined;
  switch (typeof value) {
    case 'string':
      return 1 + nameBytes + 1 + 4 + Buffer.byteLength(value, 'utf8');
    case 'boolean':
      return 1 + nameBytes + 1 + 1;
    case 'number':
      // amqplib's own rule: a fraction under 2^50 is a double; anything else it sends as a long.
      return Number.isSafeInteger(value) || (Math.abs(value) < 2 ** 50 && !Number.isInteger(value)) ? 1 + nameBytes + 1 + 8 : undefined;
    default:
      return undefined;
  }
}

function firstFailureAt(headers: Headers, failedAt: Date): string {
  const earlier = headers[MessageHeaders.FirstFailureAt];
  // Kept only in the form this library writes: the value comes from the message, and V8 parses long
  // free text as a date (a forged one would crowd the queue and handler out of a copy that must shrink).
  return typeof earlier === 'string' && ISO_8601_PATTERN.test(earlier) && !Number.isNaN(Date.parse(earlier)) ? earlier : failedAt.toISOString();
}

/** Headers of the copy that waits for the next attempt: the original ones, plus where the failures stand. */
export function retryCopyHeaders(headers: Headers, retry: RetryDisposition): Record<string, unknown> {
  const result: Record<string, unknown> = {
    ...withoutBrokerHeaders(headers),
    ...eventNameHeader(headers, retry.eventName),
    [MessageHeaders.Attempt]: retry.nextAttempt,
    [MessageHeaders.FirstFailureAt]: firstFailureAt(headers, retry.failure.failedAt),
    [MessageHeaders.LastFailureAt]: retry.failure.failedAt.toISOString(),
    [MessageHeaders.LastError]: `${retry.failure.name}: ${retry.failure.message}`,
  };
  // A dead letter moved back by hand and failing again is a message being retried, not a dead letter:
  // from its next attempt on, its handler no longer sees the earlier give-up (reason, error, count).
  for (const name of DEAD_LETTER_HEADERS) delete result[name];
  return result;
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
  // A dead letter moved back by hand and dead-lettered again by a failure without a stack (poison, a
  // thrown non-Error) must not keep the earlier failure's stack beside this one's name and message.
  if (deadLetter.failure.stack) result[MessageHeaders.ErrorStack] = deadLetter.failure.stack;
  else delete result[MessageHeaders.ErrorStack];
  // The retry headers' last error is in ie-error-*; their attempt, in ie-attempts (the calls made, which
  // a stale or lowered attempt count can differ from). A dead letter moved back by hand then starts afresh.
  delete result[MessageHeaders.LastError];
  delete result[MessageHeaders.Attempt];
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
