import type { ConfirmChannel, GetMessage } from 'amqplib';
import { closeQuietly } from '../transport/rabbitmq/close-quietly';
import { copyProperties, droppedHeadersWithProperties, isEncodingError, withEncodableProperties } from '../transport/rabbitmq/copy-properties';
import { MessageHeaders } from '../envelope/message-headers';
import { describeDeadLetter, requeueTarget, summarizeDeadLetter, type StoredDeadLetter } from './dead-letter-views';
import { RequeueInterruptedError } from '../errors/requeue-interrupted.error';
import { requeuedHeaders, smallerCopyHeaders } from './failure-headers';

/** One dead letter, as listed. */
export interface DeadLetterSummary {
  readonly messageId: string | undefined;
  readonly eventName: string | undefined;
  readonly reason: string | undefined;
  readonly attempts: number | undefined;
  readonly handler: string | undefined;
  /** The handler's queue, where a requeue sends it. */
  readonly queue: string | undefined;
  readonly deadLetteredAt: string | undefined;
  readonly error: string | undefined;
}

/** One dead letter, whole. */
export interface DeadLetterDetails extends DeadLetterSummary {
  readonly headers: Readonly<Record<string, unknown>>;
  readonly properties: Readonly<Record<string, unknown>>;
  /** The body as UTF-8 text, or base64 (`bodyEncoding`) when it is not valid UTF-8. */
  readonly body: string;
  readonly bodyEncoding: 'utf8' | 'base64';
  readonly errorStack: string | undefined;
  readonly firstFailureAt: string | undefined;
}

/** How long a requeue waits for the broker to confirm one copy, unless told otherwise. */
const DEFAULT_CONFIRM_TIMEOUT_MS = 10_000;

/** Which dead letters an operation applies to. */
export type DeadLetterSelection = { readonly all: true } | { readonly messageIds: readonly string[] };

/**
 * The operator's view of a dead-letter queue: list, inspect, requeue, purge. Works on any channel
 * opener, so the injectable `DeadLetterService` and the command line share it.
 *
 * RabbitMQ has no "peek": messages are read with `basic.get` without acknowledging them, then returned
 * (closing the channel requeues everything it holds unacknowledged, in order). Nothing is removed from a
 * dead-letter queue before its copy is confirmed where it goes.
 */
export class DeadLetterQueueOperations {
  /**
   * @param openChannel opens a channel that may publish (a requeue's copies)
   * @param openReadingChannel opens one that only reads and acknowledges (listing, purging): the service
   *   passes its consuming connection's, which a broker alarm never blocks
   * @param publishing how long a requeue waits for each copy's confirm, and whether the broker blocks
   *   publishing on `openChannel`'s connection right now (a memory or disk alarm): a requeue then fails at once
   */
  constructor(
    private readonly openChannel: () => Promise<ConfirmChannel>,
    private readonly openReadingChannel: () => Promise<ConfirmChannel> = openChannel,
    private readonly publishing: { readonly confirmTimeoutMs?: number; readonly isBlocked?: () => boolean } = {},
  ) {}

  /**
   * Up to `limit` dead letters, oldest first, and how many there are in all. With `limit` 0 only the
   * count: no message is read.
   */
  async list(deadLetterQueue: string, limit = 100): Promise<{ total: number; messages: DeadLetterSummary[] }> {
    assertListLimit(limit);
    const messages: DeadLetterSummary[] = [];
    const total = await this.scan(
      deadLetterQueue,
      this.openReadingChannel,
      async (message) => {
        messages.push(summarizeDeadLetter(toStored(message)));
        return 'keep';
      },
      limit,
    );
    return { total, messages };
  }

  /** Everything about one dead letter, or `undefined` when it is not in the queue. */
  async show(deadLetterQueue: string, messageId: string): Promise<DeadLetterDetails | undefined> {
    let found: DeadLetterDetails | undefined;
    await this.scan(deadLetterQueue, this.openReadingChannel, async (message) => {
      if (String(message.properties.messageId ?? '') !== messageId) return 'keep';
      found = describeDeadLetter(toStored(message));
      return 'stop';
    });
    return found;
  }

  /**
   * Sends the selected dead letters back to their handler's queue (never through the topic exchange:
   * other handlers of the event do not run again). Each keeps its message id and starts its attempts
   * afresh. A dead letter leaves the queue only once its copy is confirmed.
   * @returns the ids requeued, those selected but not found, and the target queues that had no
   *   consumer when checked (a handler renamed or removed leaves its old queue behind: what goes there
   *   waits for a consumer that may never come)
   * @throws RequeueInterruptedError when it stops part-way (a target queue missing, the broker blocking
   *   publishing, a copy not confirmed), naming what was requeued before
   */
  async requeue(
    deadLetterQueue: string,
    selection: DeadLetterSelection,
  ): Promise<{ requeued: string[]; missing: string[]; withoutConsumers: string[] }> {
    const confirmTimeoutMs = this.publishing.confirmTimeoutMs ?? DEFAULT_CONFIRM_TIMEOUT_MS;
    const requeued: string[] = [];
    const wanted = selectionSet(selection);
    const targets = new Map<string, { exists: boolean; consumers: number }>();
    let copies: ConfirmChannel | undefined;
    // Copied, and back in the dead-letter queue too (see below).
    let inBothQueues: string | undefined;
    try {
      if (this.publishing.isBlocked?.()) {
        throw new Error('The broker is blocking publishing (a memory or disk alarm): try again once the alarm has cleared');
      }
      // Dead letters are read (and acknowledged) on a reading channel, copies sent on a publishing one:
      // when the broker blocks the publishing connection mid-way, the copy's confirm times out, and the
      // reading channel, still answered, closes and puts the dead letter back.
      // Opened first, within the confirm timeout: a connection the broker has stopped reading (an alarm)
      // never answers the open either.
      const channel = await withinTime(this.openChannel(), confirmTimeoutMs, 'The broker did not open a channel for the requeue', (late) => void closeQuietly(late));
      copies = channel;
      await this.scan(deadLetterQueue, this.openReadingChannel, async (message, reading) => {
        const id = String(message.properties.messageId ?? '');
        if (wanted && !wanted.has(id)) return 'keep';
        const target = requeueTarget(message.properties.headers ?? {}, deadLetterQueue, toStored(message).messageId);
        let found = targets.get(target);
        if (!found) targets.set(target, (found = await this.inspectQueue(target)));
        if (!found.exists) throw new Error(`Queue "${target}" does not exist (has its service been started?)`);
        if (this.publishing.isBlocked?.()) {
          throw new Error('The broker began blocking publishing (a memory or disk alarm): try again once the alarm has cleared');
        }
        // The reading channel closed meanwhile (its connection lost): the broker has put the dead letter
        // back, and a copy now would make two of it.
        if (reading.closed) throw new Error(`The channel reading "${deadLetterQueue}" closed before ${id || '(no id)'} was copied; it stays a dead letter`);
        await publishCopy(channel, target, message, confirmTimeoutMs);
        requeued.push(id);
        if (reading.closed) {
          inBothQueues = id;
          throw new Error(
            `The channel reading "${deadLetterQueue}" closed while ${id || '(no id)'} was being copied: its copy is in "${target}", ` +
              `and the dead letter is back in "${deadLetterQueue}" too (purge it there by its id)`,
          );
        }
        return 'ack';
      });
    } catch (error) {
      throw new RequeueInterruptedError(requeued, error, inBothQueues);
    } finally {
      if (copies) await closeQuietly(copies);
    }
    return {
      requeued,
      missing: wanted ? [...wanted].filter((id) => !requeued.includes(id)) : [],
      withoutConsumers: [...targets].filter(([, target]) => target.exists && target.consumers === 0).map(([queue]) => queue),
    };
  }

  /**
   * Deletes the selected dead letters for good. All of them only from a queue nothing consumes: a queue
   * with consumers is a handler's (named by mistake, without `.dlq`), whose messages are not dead; nor
   * from a retry wait queue (`<queue>.retry.<tier>ms`, which nothing consumes either), whose messages
   * wait for their next attempt.
   */
  async purge(deadLetterQueue: string, selection: DeadLetterSelection): Promise<{ purged: number; missing: string[] }> {
    if ('all' in selection) {
      if (RETRY_WAIT_QUEUE.test(deadLetterQueue)) throw waitQueueRefusal(deadLetterQueue);
      const channel = await this.openReadingChannel();
      try {
        const { consumerCount } = await channel.checkQueue(deadLetterQueue).catch((error: Error) => {
          throw /NOT.FOUND/.test(error.message) ? new Error(`Queue "${deadLetterQueue}" does not exist`) : error;
        });
        if (consumerCount > 0) throw consumedQueueRefusal(deadLetterQueue, consumerCount);
        return { purged: (await channel.purgeQueue(deadLetterQueue)).messageCount, missing: [] };
      } finally {
        await closeQuietly(channel);
      }
    }
    const wanted = new Set(selection.messageIds);
    const found = new Set<string>();
    let purged = 0;
    await this.scan(deadLetterQueue, this.openReadingChannel, async (message) => {
      const id = String(message.properties.messageId ?? '');
      if (!wanted.has(id)) return 'keep';
      // Counted per message: one id can be dead-lettered twice (a duplicate delivery).
      found.add(id);
      purged++;
      return 'ack';
    });
    return { purged, missing: [...wanted].filter((id) => !found.has(id)) };
  }

  /**
   * Reads the queue once through (as many messages as it held when the scan began, at most `maxReads`),
   * handing each to `visit`: `ack` removes it, `keep` leaves it, `stop` ends the scan. Kept messages go
   * back in order.
   * @returns how many messages the queue held
   */
  private async scan(
    queue: string,
    open: () => Promise<ConfirmChannel>,
    visit: (message: GetMessage, reading: { readonly closed: boolean }) => Promise<'ack' | 'keep' | 'stop'>,
    maxReads = Infinity,
  ): Promise<number> {
    const channel = await open();
    // Once closed, the broker has put back what the channel held unacknowledged.
    const reading = { closed: false };
    channel.once('close', () => (reading.closed = true));
    try {
      const { messageCount } = await channel.checkQueue(queue).catch((error: Error) => {
        throw /NOT.FOUND/.test(error.message) ? new Error(`Queue "${queue}" does not exist`) : error;
      });
      for (let read = 0; read < Math.min(messageCount, maxReads); read++) {
        const message = await channel.get(queue, { noAck: false });
        if (!message) break;
        const verdict = await visit(message, reading);
        if (verdict === 'ack') channel.ack(message);
        if (verdict === 'stop') break;
      }
      return messageCount;
    } finally {
      // Everything still unacknowledged returns to the queue, in its place.
      await closeQuietly(channel);
    }
  }

  /** Whether `queue` exists, and how many consumers it has now. */
  private async inspectQueue(queue: string): Promise<{ exists: boolean; consumers: number }> {
    const channel = await this.openReadingChannel();
    channel.on('error', () => undefined);
    try {
      const { consumerCount } = await channel.checkQueue(queue);
      return { exists: true, consumers: consumerCount };
    } catch (error) {
      // Only NOT_FOUND says it is not there; anything else (ACCESS_REFUSED, another connection's
      // exclusive queue: RESOURCE_LOCKED) is said as it is.
      if ((error as { code?: unknown }).code === 404) return { exists: false, consumers: 0 };
      throw new Error(`Could not check queue "${queue}": ${(error as Error).message}`);
    } finally {
      await closeQuietly(channel);
    }
  }
}

/**
 * `work`'s result, or a rejection with `message` after `timeoutMs`; what `work` gives after that is
 * handed to `late` (to close it).
 */
function withinTime<T>(work: Promise<T>, timeoutMs: number, message: string, late: (value: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      reject(new Error(`${message} within ${timeoutMs} ms (is publishing blocked by an alarm?); nothing was requeued`));
    }, timeoutMs);
    work.then(
      (value) => {
        clearTimeout(timer);
        if (expired) late(value);
        else resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (!expired) reject(error);
      },
    );
  });
}

/** A handler's retry wait queue, as `waitQueueName()` names them. */
const RETRY_WAIT_QUEUE = /\.retry\.\d+ms$/;

/** Why purging all of a queue named as a retry wait queue is refused (RabbitMQ: nothing consumes those either). */
function waitQueueRefusal(queue: string): Error {
  return new Error(
    `Queue "${queue}" is named as a handler's retry wait queue, whose messages wait for their next attempt: ` +
      'purging all would delete them for good, neither retried nor dead-lettered. Nothing was purged. Purge by message id ' +
      '(or, for a dead-letter queue of yours so named, give it another name).',
  );
}

/**
 * Why purging all of a queue with consumers is refused (by every transport): nothing consumes a
 * dead-letter queue, so this is a handler's queue, named by mistake.
 */
export function consumedQueueRefusal(queue: string, consumers: number): Error {
  return new Error(
    `Queue "${queue}" has ${consumers} consumer(s), and nothing consumes a dead-letter queue: it looks like ` +
      "a handler's queue, whose messages purging all would delete for good. Nothing was purged. Name its dead-letter " +
      'queue, stop its consumers first, or purge by message id.',
  );
}

/**
 * Refuses a selection of no shape it can be, as it comes (from an admin endpoint, say): `{ all: false }`
 * or `{ all: 'yes' }` must not act on every dead letter, nor `{ messageIds: 'abc' }` on the ids a, b, c.
 */
export function assertDeadLetterSelection(selection: DeadLetterSelection): void {
  const given = selection as { all?: unknown; messageIds?: unknown } | null;
  if (typeof given === 'object' && given !== null && 'all' in given && !('messageIds' in given)) {
    if (given.all === true) return;
  } else if (typeof given === 'object' && given !== null && 'messageIds' in given && !('all' in given)) {
    if (Array.isArray(given.messageIds) && given.messageIds.every((id) => typeof id === 'string')) return;
  }
  let shown: string;
  try {
    shown = JSON.stringify(selection) ?? String(selection);
  } catch {
    shown = 'what was given';
  }
  throw new TypeError(`A dead-letter selection is { all: true } or { messageIds: string[] }, not ${shown.slice(0, 200)}`);
}

export function assertListLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(`The limit of a dead-letter list must be a whole number from 0 (0: only the count), not ${String(limit)}`);
  }
}

function selectionSet(selection: DeadLetterSelection): Set<string> | undefined {
  return 'all' in selection ? undefined : new Set(selection.messageIds);
}

function toStored(message: GetMessage): StoredDeadLetter {
  const { headers, ...properties } = message.properties;
  return {
    messageId: message.properties.messageId === undefined ? undefined : String(message.properties.messageId),
    routingKey: message.fields.routingKey,
    headers: headers ?? {},
    properties: properties as Record<string, unknown>,
    content: message.content,
  };
}

/**
 * Why a copy's confirm failed. A nack means the broker did not take it; a channel that closed first
 * (its connection lost) leaves it unknown: the copy may have reached its queue before the close.
 */
function unconfirmedCopy(error: Error, id: string, queue: string): string {
  if (error.message === 'message nacked') return `The broker refused (nacked) the requeued copy of ${id}; it stays a dead letter`;
  return (
    `The channel closed before the broker confirmed the requeued copy of ${id} (${error.message}): it stays a dead letter, ` +
    `and the copy may be in "${queue}" already; look there before requeueing it again (its handler's inbox skips it once handled)`
  );
}

/**
 * Sends the copy, `mandatory`: a queue deleted since it was checked returns the copy (RabbitMQ would
 * confirm one routed nowhere, and the dead letter would then be acked and lost). Copies go one at a
 * time, so a return before this copy's confirm is this copy's. A copy not confirmed within
 * `confirmTimeoutMs` (the broker blocked the connection, say) fails the requeue: its dead letter stays.
 */
function publishCopy(channel: ConfirmChannel, queue: string, message: GetMessage, confirmTimeoutMs: number): Promise<void> {
  const { properties } = message;
  const id = String(properties.messageId);
  return new Promise((resolve, reject) => {
    let returned = false;
    const onReturn = (): void => {
      returned = true;
    };
    const timer = setTimeout(() => {
      channel.off('return', onReturn);
      reject(
        new Error(
          `The broker did not confirm the requeued copy of ${id} within ${confirmTimeoutMs} ms (is publishing blocked by an alarm?); ` +
            'it stays a dead letter (the copy may still arrive: requeued again, its handler\'s inbox skips it once handled)',
        ),
      );
    }, confirmTimeoutMs);
    channel.on('return', onReturn);
    const headers = requeuedHeaders(properties.headers ?? {});
    // A dead letter another client put there may carry headers or properties amqplib decoded but cannot
    // encode again (or over its 64 KiB table): then the copy goes in the forms a retry copy takes, the
    // headers left out named in `ie-dropped-headers`, rather than stop every `requeue --all` at it.
    const forms = [() => copyProperties(properties, headers), ...[headers, ...smallerCopyHeaders(headers)].map((form) => () => encodableForm(properties, form))];
    for (const [index, form] of forms.entries()) {
      try {
        channel.sendToQueue(queue, message.content, { ...form(), mandatory: true }, (error) => {
          clearTimeout(timer);
          channel.off('return', onReturn);
          if (error) reject(new Error(unconfirmedCopy(error, id, queue)));
          else if (returned) reject(new Error(`Queue "${queue}" is gone: the copy of ${id} was returned; it stays a dead letter`));
          else resolve();
        });
        return;
      } catch (error) {
        if (isEncodingError(error) && index < forms.length - 1) continue;
        // Not sent at all (the channel closed, nothing amqplib could encode): no confirm is coming, and
        // the timer must not keep the process (the command line) waiting for one.
        clearTimeout(timer);
        channel.off('return', onReturn);
        reject(new Error(`The requeued copy of ${id} could not be sent to "${queue}" (${(error as Error).message}); it stays a dead letter`));
        return;
      }
    }
  });
}

/** A copy's options with `headers`, without the properties amqplib cannot encode (named in `ie-dropped-headers`). */
function encodableForm(properties: GetMessage['properties'], headers: Record<string, unknown>): ReturnType<typeof copyProperties> {
  const { options, dropped } = withEncodableProperties(copyProperties(properties, headers));
  if (dropped.length === 0) return options;
  return { ...options, headers: { ...headers, [MessageHeaders.DroppedHeaders]: droppedHeadersWithProperties(headers[MessageHeaders.DroppedHeaders], dropped) } };
}
