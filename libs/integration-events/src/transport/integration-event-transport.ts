import type { Disposition } from '../consumer/disposition';
import type { IncomingMessage } from '../consumer/incoming-message';
import type { DeadLetterDetails, DeadLetterSelection, DeadLetterSummary } from '../dead-letter/dead-letter-queue.operations';
import type { DiscoveredHandler } from '../discovery/discovered-handler';
import type { OutgoingMessage } from '../envelope/outgoing-message';
import type { PublishOutcome } from './publish-outcome';

/** Turns one delivery into a disposition (the library's `MessageDispatcher`). */
export type DispatchFunction = (handler: DiscoveredHandler, message: IncomingMessage, shutdown: AbortSignal) => Promise<Disposition>;

/** A disposition that moves the message: a retry copy or a dead letter. */
export type CopyDisposition = Exclude<Disposition, { readonly action: 'ack' }>;

/** What consumers call: `dispatch` for each delivery, `placed` once a failed one's copy is in its queue. */
export interface ConsumerCallbacks {
  readonly dispatch: DispatchFunction;
  /** The copy a disposition asked for is in its queue and the original is settled (for metrics). */
  readonly placed: (handler: DiscoveredHandler, disposition: CopyDisposition) => void;
}

/** Operations on one transport's dead-letter queues. */
export interface DeadLetterOperations {
  list(deadLetterQueue: string, limit?: number): Promise<{ total: number; messages: DeadLetterSummary[] }>;
  show(deadLetterQueue: string, messageId: string): Promise<DeadLetterDetails | undefined>;
  requeue(deadLetterQueue: string, selection: DeadLetterSelection): Promise<{ requeued: string[]; missing: string[]; withoutConsumers: string[] }>;
  purge(deadLetterQueue: string, selection: DeadLetterSelection): Promise<{ purged: number; missing: string[] }>;
}

/**
 * What the relay and the consumers need from a message transport. Two implement it with the same
 * semantics (per-handler queues; retries with the attempt header and backoff; a dead-letter queue;
 * replay): RabbitMQ, and an in-process broker for running without one.
 */
export interface IntegrationEventTransport {
  /** For logs: `RabbitMQ at amqp://…`, `in-process broker`. */
  readonly description: string;

  /** Sets up publishing (the relay runs in this process). Call before `connect()`. */
  enablePublishing(): void;

  /** Starts one consumer per handler, subscribing once connected. Call before `connect()`. */
  startConsumers(handlers: readonly DiscoveredHandler[], callbacks: ConsumerCallbacks): void;

  /** Connects (or waits for the first attempt; see each transport). */
  connect(): Promise<void>;

  /** Called after each (re)connection is fully set up: the relay is woken by it. */
  onReady(listener: () => void): void;

  /** True when `publish()` can send now. */
  readonly canPublish: boolean;

  /**
   * Publishes the messages and waits for the transport to take responsibility for each.
   * @throws TransportNotReadyError when nothing could be sent at all
   */
  publish(messages: readonly OutgoingMessage[]): Promise<PublishOutcome[]>;

  /** Stops taking deliveries and waits (up to `timeoutMs`) for the handlers in flight. */
  stopConsumers(timeoutMs: number): Promise<void>;

  /** Closes everything. */
  close(): Promise<void>;

  /** How many handlers have a consumer attached right now. */
  readonly attachedConsumers: number;

  /** Whether the transport is connected (for health checks). */
  readonly isConnected: boolean;

  /** The dead-letter queues' operations. */
  readonly deadLetters: DeadLetterOperations;
}
