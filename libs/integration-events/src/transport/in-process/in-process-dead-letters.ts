import { assertListLimit, consumedQueueRefusal, type DeadLetterDetails, type DeadLetterSelection, type DeadLetterSummary } from '../../dead-letter/dead-letter-queue.operations';
import { describeDeadLetter, requeueTarget, summarizeDeadLetter } from '../../dead-letter/dead-letter-views';
import { requeuedHeaders } from '../../dead-letter/failure-headers';
import { RequeueInterruptedError } from '../../errors/requeue-interrupted.error';
import type { DeadLetterOperations } from '../integration-event-transport';
import type { InProcessBroker } from './in-process-broker';

/** Dead-letter operations on the in-process broker's queues: the same contract as on RabbitMQ. */
export class InProcessDeadLetters implements DeadLetterOperations {
  constructor(private readonly broker: InProcessBroker) {}

  async list(deadLetterQueue: string, limit = 100): Promise<{ total: number; messages: DeadLetterSummary[] }> {
    assertListLimit(limit);
    const messages = this.existing(deadLetterQueue).peek();
    return { total: messages.length, messages: messages.slice(0, limit).map(summarizeDeadLetter) };
  }

  async show(deadLetterQueue: string, messageId: string): Promise<DeadLetterDetails | undefined> {
    const message = this.existing(deadLetterQueue).peek().find((m) => (m.messageId ?? '') === messageId);
    return message ? describeDeadLetter(message) : undefined;
  }

  async requeue(
    deadLetterQueue: string,
    selection: DeadLetterSelection,
  ): Promise<{ requeued: string[]; missing: string[]; withoutConsumers: string[] }> {
    const wanted = 'all' in selection ? undefined : new Set(selection.messageIds);
    const requeued: string[] = [];
    const withoutConsumers = new Set<string>();
    try {
      const queue = this.existing(deadLetterQueue);
      // One at a time, in queue order, as on RabbitMQ: a dead letter whose queue is missing stops the
      // requeue there, the ones before it requeued, it and the ones after it left in place (here the copy
      // would otherwise go to a queue made on the spot, that nobody reads).
      for (const message of queue.peek().filter((m) => !wanted || wanted.has(m.messageId ?? ''))) {
        const target = requeueTarget(message.headers, deadLetterQueue, message.messageId);
        const targetQueue = this.broker.findQueue(target);
        if (!targetQueue) throw new Error(`Queue "${target}" does not exist (has its service been started?)`);
        if (targetQueue.consumerCount === 0) withoutConsumers.add(target);
        // The copy first, as on RabbitMQ (a dead letter leaves only once its copy is placed): a broker
        // closed meanwhile refuses it, and the dead letter stays.
        this.broker.sendToQueue(target, { ...message, headers: requeuedHeaders(message.headers), redelivered: false });
        queue.take((m) => m === message);
        requeued.push(message.messageId ?? '');
      }
    } catch (error) {
      throw new RequeueInterruptedError(requeued, error);
    }
    return { requeued, missing: wanted ? [...wanted].filter((id) => !requeued.includes(id)) : [], withoutConsumers: [...withoutConsumers] };
  }

  async purge(deadLetterQueue: string, selection: DeadLetterSelection): Promise<{ purged: number; missing: string[] }> {
    const wanted = 'all' in selection ? undefined : new Set(selection.messageIds);
    const queue = this.existing(deadLetterQueue);
    // As on RabbitMQ: nothing consumes a dead-letter queue, so this one is a handler's.
    if (!wanted && queue.consumerCount > 0) throw consumedQueueRefusal(deadLetterQueue, queue.consumerCount);
    const taken = queue.take((m) => !wanted || wanted.has(m.messageId ?? ''));
    const purged = taken.map((m) => m.messageId ?? '');
    return { purged: taken.length, missing: wanted ? [...wanted].filter((id) => !purged.includes(id)) : [] };
  }

  private existing(queue: string) {
    const found = this.broker.findQueue(queue);
    if (!found) throw new Error(`Queue "${queue}" does not exist`);
    return found;
  }
}

