import { InProcessQueue } from './in-process-queue';
import type { InProcessMessage } from './in-process-message';

/**
 * A message broker inside the process, for running services without RabbitMQ (development, demos, the
 * test kit). Create one and pass the same instance to every service of the process
 * (`IntegrationEventsModule.forRoot({ inProcess: { broker } })`); it is plain state in that object, never
 * a global. It routes like a RabbitMQ topic exchange with exact routing keys (one binding per event name),
 * holds messages in per-handler queues with competing consumers and acknowledgements, and holds delayed
 * retry copies until they are due.
 *
 * Not durable: what it holds is lost when the process exits (the outbox rows were marked sent when the
 * broker took them). Use RabbitMQ when that matters.
 */
export class InProcessBroker {
  private readonly queues = new Map<string, InProcessQueue>();
  /** exchange → routing key → queue names */
  private readonly bindings = new Map<string, Map<string, Set<string>>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly taps = new Set<(exchange: string, message: InProcessMessage, routed: boolean) => void>();
  private closed = false;

  /**
   * Calls `listener` with every message published to an exchange (routed or not): how the test kit
   * records what a service published. Returns the function that stops it.
   */
  tap(listener: (exchange: string, message: InProcessMessage, routed: boolean) => void): () => void {
    this.taps.add(listener);
    return () => this.taps.delete(listener);
  }

  /** True while any queue that has consumers holds ready or unacknowledged messages, or a retry is waiting. */
  get busy(): boolean {
    if (this.timers.size > 0) return true;
    for (const queue of this.queues.values()) {
      if (queue.consumerCount > 0 && (queue.depth > 0 || queue.unacked > 0)) return true;
    }
    return false;
  }

  /** The queue named `name`, created if needed. */
  queue(name: string): InProcessQueue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new InProcessQueue(name);
      if (this.closed) queue.close();
      this.queues.set(name, queue);
    }
    return queue;
  }

  /** The queue named `name`, if it exists. */
  findQueue(name: string): InProcessQueue | undefined {
    return this.queues.get(name);
  }

  /** Names of every queue (for tests and tools). */
  get queueNames(): string[] {
    return [...this.queues.keys()];
  }

  bind(exchange: string, routingKey: string, queue: string): void {
    this.queue(queue);
    let byKey = this.bindings.get(exchange);
    if (!byKey) {
      byKey = new Map();
      this.bindings.set(exchange, byKey);
    }
    let queues = byKey.get(routingKey);
    if (!queues) {
      queues = new Set();
      byKey.set(routingKey, queues);
    }
    queues.add(queue);
  }

  /**
   * Routes a copy of the message to every queue bound to `routingKey` on `exchange`.
   * @returns false when no queue is bound (the message is unroutable and was not kept)
   */
  publish(exchange: string, message: InProcessMessage): boolean {
    this.assertOpen();
    const targets = this.bindings.get(exchange)?.get(message.routingKey);
    const routed = targets !== undefined && targets.size > 0;
    for (const listener of this.taps) listener(exchange, message, routed);
    if (!routed) return false;
    // A copy each, headers included, as the broker gives every queue its own: a handler that writes to
    // its `context.headers` changes no other handler's, nor what the testing kit recorded.
    for (const name of targets) this.queue(name).push({ ...message, exchange, headers: { ...message.headers } });
    return true;
  }

  /** Puts the message straight into one queue (retries, dead letters, replays). */
  sendToQueue(queue: string, message: InProcessMessage): void {
    this.assertOpen();
    this.queue(queue).push(straight(message));
  }

  /** Puts the message into `queue` after `delayMs` (a retry waiting for its turn). */
  sendToQueueLater(queue: string, message: InProcessMessage, delayMs: number): void {
    this.assertOpen();
    const copy = straight(message);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) this.queue(queue).push(copy);
    }, delayMs);
    timer.unref();
    this.timers.add(timer);
  }

  /** Messages waiting for a delayed delivery. */
  get delayed(): number {
    return this.timers.size;
  }

  /**
   * Drops delayed deliveries, refuses new messages and stops delivering (at the end of a test or of the
   * process): a message a consumer gives back afterwards stays in its queue instead of coming straight back.
   */
  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const queue of this.queues.values()) queue.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('The in-process broker is closed');
  }
}

/** A message put straight into a queue: a copy of one that was routed no longer says so. */
function straight(message: InProcessMessage): InProcessMessage {
  if (message.exchange === undefined) return message;
  const { exchange: _routedThrough, ...rest } = message;
  return rest;
}
