import { MessageHeaders } from '../../envelope/message-headers';
import type { DeadLetterDetails, DeadLetterSelection, DeadLetterSummary } from '../../dead-letter/dead-letter-queue.operations';
import { requeuedHeaders } from '../../dead-letter/failure-headers';
import type { DeadLetterOperations } from '../integration-event-transport';
import type { InProcessBroker } from './in-process-broker';
import type { InProcessMessage } from './in-process-message';

/** Dead-letter operations on the in-process broker's queues: the same contract as on RabbitMQ. */
export class InProcessDeadLetters implements DeadLetterOperations {
  constructor(private readonly broker: InProcessBroker) {}

  async list(deadLetterQueue: string, limit = 100): Promise<{ total: number; messages: DeadLetterSummary[] }> {
    const messages = this.existing(deadLetterQueue).peek();
    return { total: messages.length, messages: messages.slice(0, limit).map(summarize) };
  }

  async show(deadLetterQueue: string, messageId: string): Promise<DeadLetterDetails | undefined> {
    const message = this.existing(deadLetterQueue).peek().find((m) => m.messageId === messageId);
    return message ? details(message) : undefined;
  }

  async requeue(deadLetterQueue: string, selection: DeadLetterSelection): Promise<{ requeued: string[]; missing: string[] }> {
    const wanted = 'all' in selection ? undefined : new Set(selection.messageIds);
    const taken = this.existing(deadLetterQueue).take((m) => !wanted || wanted.has(m.messageId ?? ''));
    for (const message of taken) {
      const target = targetQueue(message, deadLetterQueue);
      this.broker.sendToQueue(target, { ...message, headers: requeuedHeaders(message.headers), redelivered: false });
    }
    const requeued = taken.map((m) => m.messageId ?? '');
    return { requeued, missing: wanted ? [...wanted].filter((id) => !requeued.includes(id)) : [] };
  }

  async purge(deadLetterQueue: string, selection: DeadLetterSelection): Promise<{ purged: number; missing: string[] }> {
    const wanted = 'all' in selection ? undefined : new Set(selection.messageIds);
    const taken = this.existing(deadLetterQueue).take((m) => !wanted || wanted.has(m.messageId ?? ''));
    const purged = taken.map((m) => m.messageId ?? '');
    return { purged: taken.length, missing: wanted ? [...wanted].filter((id) => !purged.includes(id)) : [] };
  }

  private existing(queue: string) {
    const found = this.broker.findQueue(queue);
    if (!found) throw new Error(`Queue "${queue}" does not exist`);
    return found;
  }
}

function targetQueue(message: InProcessMessage, deadLetterQueue: string): string {
  const header = message.headers[MessageHeaders.Queue];
  if (typeof header === 'string' && header.length > 0) return header;
  return deadLetterQueue.endsWith('.dlq') ? deadLetterQueue.slice(0, -'.dlq'.length) : deadLetterQueue;
}

function header(message: InProcessMessage, name: string): string | undefined {
  const value = message.headers[name];
  return value === undefined || value === null ? undefined : String(value);
}

function summarize(message: InProcessMessage): DeadLetterSummary {
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

function details(message: InProcessMessage): DeadLetterDetails {
  let body: string;
  let bodyEncoding: 'utf8' | 'base64' = 'utf8';
  try {
    body = new TextDecoder('utf-8', { fatal: true }).decode(message.content);
  } catch {
    body = message.content.toString('base64');
    bodyEncoding = 'base64';
  }
  return {
    ...summarize(message),
    headers: message.headers,
    properties: { ...message.properties, messageId: message.messageId },
    body,
    bodyEncoding,
    errorStack: header(message, MessageHeaders.ErrorStack),
    firstFailureAt: header(message, MessageHeaders.FirstFailureAt),
  };
}
