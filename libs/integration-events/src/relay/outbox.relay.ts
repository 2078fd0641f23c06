import { randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import { MessageHeaders } from '../envelope/message-headers';
import type { OutgoingMessage } from '../envelope/outgoing-message';
import { TransportNotReadyError } from '../errors/transport-not-ready.error';
import type { ClaimedOutboxRecord, FailedOutboxRecord } from '../outbox/outbox-record';
import { OutboxDatabase } from '../outbox/outbox-database';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { TransportHost } from '../transport/transport-host';
import { IntegrationEventsMetrics } from '../telemetry/integration-events.metrics';
import { INSTRUMENTATION_NAME, TelemetryAttributes as A } from '../telemetry/telemetry-attributes';
import { extractTraceContext, withTraceContext } from '../telemetry/trace-context';
import { exponentialBackoff } from './retry-delay';
import { WakeSignal } from './wake-signal';

/**
 * Moves committed outbox rows to the broker: claim a batch (`FOR UPDATE SKIP LOCKED` + lease), publish
 * it on the confirm channel, then mark each row by what the broker said. Woken at once by commits in
 * this process, and by a poll for rows committed elsewhere. A row is marked sent only after its
 * confirm; a failed row stays pending with its error and comes back after a backoff; an unroutable
 * row is flagged and left for an operator. Nothing here can stop the loop but `stop()`.
 */
@Injectable()
export class OutboxRelay {
  private readonly logger = new Logger('IntegrationEvents:Relay');
  private loop: Promise<void> | undefined;
  private stopping = false;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly database: OutboxDatabase,
    private readonly transports: TransportHost,
    private readonly wakeSignal: WakeSignal,
    private readonly metrics: IntegrationEventsMetrics,
  ) {}

  private readonly tracer = trace.getTracer(INSTRUMENTATION_NAME);

  get isRunning(): boolean {
    return this.loop !== undefined;
  }

  start(): void {
    // Started again while a stop() is pending: the running loop simply carries on.
    this.stopping = false;
    if (this.loop) return;
    this.loop = this.run().finally(() => (this.loop = undefined));
  }

  /** Stops after the batch in flight (if any) has been published and marked. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeSignal.notify();
    await this.loop;
  }

  /** Wakes the relay now instead of at the next poll. */
  wake(): void {
    this.wakeSignal.notify();
  }

  private async run(): Promise<void> {
    const { batchSize, pollIntervalMs } = this.config.options.relay;
    let failures = 0;
    while (!this.stopping) {
      if (!this.transports.transport.canPublish) {
        await this.wakeSignal.wait(pollIntervalMs);
        continue;
      }
      try {
        const handled = await this.relayBatch();
        failures = 0;
        if (handled < batchSize) await this.wakeSignal.wait(pollIntervalMs);
      } catch (error) {
        failures++;
        const delay = exponentialBackoff(failures, pollIntervalMs, 30_000);
        this.logger.error(`Relay round failed (retrying in ${delay} ms): ${(error as Error).message}`);
        await this.wakeSignal.wait(delay);
      }
    }
  }

  /** One round: claim, publish, mark. Returns how many rows were claimed. */
  private async relayBatch(): Promise<number> {
    const { relay } = this.config.options;
    const store = this.database.store;
    // Each batch holds its rows under a token of its own; marks only touch rows still held under it.
    const leaseToken = randomUUID();
    const rows = await store.claim(relay.batchSize, relay.leaseMs, leaseToken);
    if (rows.length === 0) return 0;

    // One PRODUCER span per message, child of the trace stored with the row at publish(); the message
    // carries this span's context on, so the consumer's span is its child.
    const spans = rows.map((row) => this.startPublishSpan(row));
    let outcomes;
    try {
      outcomes = await this.transports.transport.publish(
        rows.map((row, index) => toOutgoingMessage(row, trace.setSpan(extractTraceContext(row.headers), spans[index]!))),
      );
    } catch (error) {
      for (const span of spans) span.end();
      if (!(error instanceof TransportNotReadyError)) throw error;
      // The connection dropped between the claim and the publish: nothing was sent. Hand the rows back
      // (their attempt count untouched); they go out once the broker is back.
      await store.release(
        rows.map((row) => row.id),
        leaseToken,
      );
      return 0;
    }

    const sent: string[] = [];
    const unroutable = new Map<string, string[]>();
    const failed: FailedOutboxRecord[] = [];
    outcomes.forEach((outcome, index) => {
      const row = rows[index]!;
      const span = spans[index]!;
      span.setAttribute(A.Outcome, outcome.status);
      if (outcome.status !== 'confirmed') span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason });
      span.end();
      this.metrics.recordPublished(row.eventName, outcome.status);
      if (outcome.status === 'confirmed') sent.push(row.id);
      else if (outcome.status === 'unroutable') unroutable.set(outcome.reason, [...(unroutable.get(outcome.reason) ?? []), row.id]);
      else failed.push({ id: row.id, error: outcome.reason, retryInMs: this.retryDelay(row) });
    });

    // The broker has these messages now: a failed mark would only mean re-sending them after the lease
    // (duplicates), so marks are retried a few times before the round gives up.
    await withRetries(() => store.markSent(sent, leaseToken));
    for (const [reason, ids] of unroutable) {
      await withRetries(() => store.markUnroutable(ids, reason, leaseToken));
      this.logger.warn(`${ids.length} message(s) unroutable and flagged in the outbox (${reason}): ${ids.join(', ')}`);
    }
    if (failed.length > 0) {
      await withRetries(() => store.markFailed(failed, leaseToken));
      this.logger.warn(`${failed.length} message(s) not confirmed, will retry: ${failed[0]!.error}`);
    }
    return rows.length;
  }

  private startPublishSpan(row: ClaimedOutboxRecord): Span {
    const transport = this.config.options.inProcess ? 'in_process' : 'rabbitmq';
    const exchange = this.config.options.rabbitmq?.exchange ?? this.config.options.inProcess?.exchange ?? '';
    return this.tracer.startSpan(
      `publish ${row.eventName}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          [A.MessagingSystem]: transport,
          [A.MessagingOperationType]: 'send',
          [A.MessagingOperationName]: 'publish',
          [A.MessagingDestinationName]: exchange,
          [A.MessagingRoutingKey]: row.eventName,
          [A.MessagingMessageId]: row.id,
          [A.EventName]: row.eventName,
          [A.EventVersion]: row.eventVersion,
        },
      },
      extractTraceContext(row.headers),
    );
  }

  private retryDelay(row: ClaimedOutboxRecord): number {
    const { retryInitialDelayMs, retryMaxDelayMs } = this.config.options.relay;
    return exponentialBackoff(row.attempts + 1, retryInitialDelayMs, retryMaxDelayMs);
  }
}

async function withRetries(operation: () => Promise<void>, delaysMs: readonly number[] = [100, 500, 2_000]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      const delay = delaysMs[attempt];
      if (delay === undefined) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

function toOutgoingMessage(row: ClaimedOutboxRecord, traceContext: Context): OutgoingMessage {
  return {
    messageId: row.id,
    routingKey: row.eventName,
    body: Buffer.from(row.payload, 'utf8'),
    headers: withTraceContext(row.headers, traceContext) as OutgoingMessage['headers'],
    occurredAt: row.occurredAt,
    correlationId: String(row.headers[MessageHeaders.CorrelationId] ?? row.id),
    sourceService: String(row.headers[MessageHeaders.SourceService] ?? ''),
  };
}
