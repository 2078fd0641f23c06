import { Injectable } from '@nestjs/common';
import { IntegrationEventConsumers } from '../consumer/integration-event-consumers';
import type { DeadLetterOperations } from '../transport/integration-event-transport';
import { TransportHost } from '../transport/transport-host';
import { assertDeadLetterSelection, type DeadLetterDetails, type DeadLetterSelection, type DeadLetterSummary } from './dead-letter-queue.operations';

/**
 * Dead-letter queues of this service, for operators and admin endpoints: list, inspect, requeue (one,
 * some, all) and purge. Uses the service's own transport (its RabbitMQ connection, or the in-process broker). The same operations are on the
 * command line (`nestjs-integration-events dlq …`).
 *
 * @example
 * ```ts
 * const { messages } = await deadLetters.list('payments.order-created.dlq');
 * await deadLetters.requeue('payments.order-created.dlq', { messageIds: [messages[0].messageId!] });
 * ```
 */
@Injectable()
export class DeadLetterService {
  constructor(
    private readonly transports: TransportHost,
    private readonly consumers: IntegrationEventConsumers,
  ) {}

  private get operations(): DeadLetterOperations {
    return this.transports.transport.deadLetters;
  }

  /** Every handler of this service with its dead-letter queue and how many messages wait there. */
  async overview(): Promise<Array<{ handler: string; queue: string; deadLetterQueue: string; messages: number }>> {
    const result = [];
    for (const handler of this.consumers.handlers) {
      const { total } = await this.operations.list(handler.deadLetterQueue, 0);
      result.push({ handler: handler.name, queue: handler.queue, deadLetterQueue: handler.deadLetterQueue, messages: total });
    }
    return result;
  }

  list(deadLetterQueue: string, limit = 100): Promise<{ total: number; messages: DeadLetterSummary[] }> {
    return this.operations.list(deadLetterQueue, limit);
  }

  show(deadLetterQueue: string, messageId: string): Promise<DeadLetterDetails | undefined> {
    return this.operations.show(deadLetterQueue, messageId);
  }

  /**
   * Sends dead letters back to their handler's queue; they keep their id and start their attempts afresh.
   * `withoutConsumers` names the target queues that had no consumer (a handler renamed or removed).
   * @throws RequeueInterruptedError when it stops part-way, with the ids requeued before
   */
  async requeue(deadLetterQueue: string, selection: DeadLetterSelection): Promise<{ requeued: string[]; missing: string[]; withoutConsumers: string[] }> {
    assertDeadLetterSelection(selection);
    return this.operations.requeue(deadLetterQueue, selection);
  }

  /** Deletes dead letters for good. */
  async purge(deadLetterQueue: string, selection: DeadLetterSelection): Promise<{ purged: number; missing: string[] }> {
    assertDeadLetterSelection(selection);
    return this.operations.purge(deadLetterQueue, selection);
  }
}
