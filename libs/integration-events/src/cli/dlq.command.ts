import { connectionUrl } from './connection-url';
import { printable, printableJson } from '../util/printable';
import * as amqp from 'amqplib';
import { DeadLetterQueueOperations } from '../dead-letter/dead-letter-queue.operations';
import { RequeueInterruptedError } from '../errors/requeue-interrupted.error';
import { closeConnectionQuietly } from '../transport/rabbitmq/close-quietly';
import { redactSecrets, redactUrl } from '../util/redact-url';
import { MIN_FRAME_MAX } from '../options/resolve-options';
import { assertKnownOptions, type ParsedArguments, UsageError } from './cli-arguments';
import type { Output } from './output';

/** The options of each action, besides `--url`, `--json` and `--help`. */
const DLQ_OPTIONS: Readonly<Record<string, readonly string[]>> = { list: ['limit'], show: [], requeue: ['all'], purge: ['all'] };

/** `dlq list|show|requeue|purge …` against a RabbitMQ broker. */
export async function dlqCommand({ positional, options }: ParsedArguments, output: Output): Promise<void> {
  const [action, queue, ...ids] = positional;
  if (!action || !queue) throw new UsageError('dlq needs an action and a dead-letter queue');
  const known = Object.hasOwn(DLQ_OPTIONS, action) ? DLQ_OPTIONS[action] : undefined;
  if (!known) throw new UsageError(`unknown dlq action "${action}"`);
  assertKnownOptions(options, `dlq ${action}`, ['url', ...known]);
  // Usage is checked before connecting: a mistake exits with 2 whether or not the broker answers.
  const request = dlqRequest(action, ids, options);
  const url = connectionUrl(options.url, 'url', 'RABBITMQ_URL', 'amqp://guest:guest@127.0.0.1:5672');
  let connection: amqp.ChannelModel;
  try {
    connection = await amqp.connect(url);
  } catch (error) {
    throw new Error(`Cannot connect to ${redactUrl(url)}: ${redactSecrets((error as Error).message, url)}`);
  }
  connection.on('error', () => undefined);
  // A requeue's copies carry the dead letters' headers, in one frame each: a smaller limit than the
  // service's would have the broker close the connection partway (see MIN_FRAME_MAX).
  const frameMax = (connection.connection as unknown as { frameMax?: unknown }).frameMax;
  if (request.action === 'requeue' && typeof frameMax === 'number' && frameMax < MIN_FRAME_MAX) {
    await closeConnectionQuietly(connection);
    throw new Error(
      `Cannot requeue through ${redactUrl(url)}: its frames are limited to ${frameMax} bytes, and a dead letter's headers may ` +
        `need up to ${MIN_FRAME_MAX} (leave frameMax out of the URL, or raise the broker's frame_max)`,
    );
  }
  let blocked = false;
  connection.on('blocked', () => (blocked = true));
  connection.on('unblocked', () => (blocked = false));
  const operations = new DeadLetterQueueOperations(
    async () => {
      const channel = await connection.createConfirmChannel();
      channel.on('error', () => undefined);
      return channel;
    },
    undefined,
    { isBlocked: () => blocked },
  );
  try {
    switch (request.action) {
      case 'list': {
        const { total, messages } = await operations.list(queue, request.limit);
        output.result({ queue, total, messages }, () => [
          `${queue}: ${total} dead letter(s)${messages.length < total ? `, showing ${messages.length}` : ''}`,
          ...messages.map(
            (m) =>
              // What a message carries is printed escaped: a forged id or error must not drive the terminal.
              `  ${printable(m.messageId ?? '(no id)', 200)}  ${printable(m.eventName ?? '?', 200)}  ${printable(m.reason ?? '?', 50)} ` +
              `after ${m.attempts ?? '?'} attempt(s)  ${printable(m.deadLetteredAt ?? '', 50)}  ${printable(m.error ?? '')}`,
          ),
        ]);
        return;
      }
      case 'show': {
        const found = await operations.show(queue, request.messageId);
        if (!found) throw new Error(`No dead letter ${request.messageId} in ${queue}`);
        output.result(found, () => [printableJson(found)]);
        return;
      }
      case 'requeue': {
        let result: Awaited<ReturnType<DeadLetterQueueOperations['requeue']>>;
        try {
          result = await operations.requeue(queue, request.selection);
        } catch (error) {
          if (!(error instanceof RequeueInterruptedError)) throw error;
          output.partialFailure(error, { requeued: error.requeued, ...(error.inBothQueues === undefined ? {} : { inBothQueues: error.inBothQueues }) });
          return;
        }
        output.result(result, () => [
          `Requeued ${result.requeued.length} message(s) from ${queue}`,
          ...(result.missing.length > 0 ? [`Not found: ${result.missing.map((id) => printable(id, 300)).join(', ')}`] : []),
          ...result.withoutConsumers.map(
            (target) => `Warning: ${printable(target, 300)} has no consumer (a handler renamed or removed?): what went there waits for one`,
          ),
        ]);
        if (result.missing.length > 0) process.exitCode = 1;
        return;
      }
      case 'purge': {
        const result = await operations.purge(queue, request.selection);
        output.result(result, () => [
          `Purged ${result.purged} message(s) from ${queue}`,
          ...(result.missing.length > 0 ? [`Not found: ${result.missing.map((id) => printable(id, 300)).join(', ')}`] : []),
        ]);
        if (result.missing.length > 0) process.exitCode = 1;
        return;
      }
    }
  } finally {
    // Bounded: a connection the broker blocked (an alarm) never answers the close; its socket is then
    // destroyed, or it would keep the command running until the alarm ends.
    await closeConnectionQuietly(connection);
  }
}

type Selection = { all: true } | { messageIds: string[] };

/** What a `dlq` action was asked to do, its arguments checked. */
type DlqRequest =
  | { readonly action: 'list'; readonly limit: number }
  | { readonly action: 'show'; readonly messageId: string }
  | { readonly action: 'requeue' | 'purge'; readonly selection: Selection };

function dlqRequest(action: string, ids: string[], options: ParsedArguments['options']): DlqRequest {
  switch (action) {
    case 'list': {
      if (ids.length > 0) throw new UsageError(`dlq list takes one dead-letter queue (got "${ids[0]}" too); give how many to show with --limit`);
      const limit = Number(options.limit ?? 50);
      if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError('--limit must be a whole number from 1');
      return { action, limit };
    }
    case 'show': {
      const [messageId] = ids;
      // '' is an id: it picks a dead letter without one.
      if (messageId === undefined) throw new UsageError('dlq show needs a message id');
      if (ids.length > 1) throw new UsageError(`dlq show takes one message id (got "${ids[1]}" too)`);
      return { action, messageId };
    }
    case 'requeue':
    case 'purge':
      return { action, selection: selection(options, ids) };
    default:
      throw new UsageError(`unknown dlq action "${action}"`);
  }
}

function selection(options: ParsedArguments['options'], ids: string[]): Selection {
  if (options.all === true) {
    if (ids.length > 0) throw new UsageError('give message ids or --all, not both');
    return { all: true };
  }
  if (ids.length === 0) throw new UsageError('give the message ids to act on, or --all');
  return { messageIds: ids };
}
