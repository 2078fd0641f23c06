import type { InProcessMessage } from './in-process-message';

/** What a consumer does with a delivery: it must call exactly one of these, once. */
export interface InProcessDelivery {
  readonly message: InProcessMessage;
  ack(): void;
  /** Gives the message back to the queue, in the place it had (marked redelivered). */
  requeue(): void;
}

interface Subscriber {
  readonly onDelivery: (delivery: InProcessDelivery) => void;
  readonly prefetch: number;
  unacked: number;
  active: boolean;
}

/**
 * A FIFO queue with competing consumers, prefetch and acknowledgements, like a RabbitMQ queue: a
 * message is handed to one subscriber with room, round-robin, and stays "unacked" until that subscriber
 * acks or requeues it; cancelling a subscription returns nothing by itself — its holder requeues what
 * it did not finish.
 */
export class InProcessQueue {
  /** Ready messages, each with its place in the order they were pushed (where a requeue puts it back). */
  private readonly ready: Array<{ readonly message: InProcessMessage; readonly place: number }> = [];
  private pushed = 0;
  private readonly subscribers: Subscriber[] = [];
  private next = 0;
  private scheduled = false;
  private unackedCount = 0;
  private closed = false;

  constructor(readonly name: string) {}

  /** Ready messages (not handed to a consumer). */
  get depth(): number {
    return this.ready.length;
  }

  /** Messages handed out and not yet settled. */
  get unacked(): number {
    return this.unackedCount;
  }

  get consumerCount(): number {
    return this.subscribers.filter((s) => s.active).length;
  }

  /** A copy of the ready messages, in order (for dead-letter listing). */
  peek(): readonly InProcessMessage[] {
    return this.ready.map((entry) => entry.message);
  }

  push(message: InProcessMessage): void {
    this.ready.push({ message, place: this.pushed++ });
    this.schedule();
  }

  /** Removes and returns the ready messages matching `predicate` (for dead-letter replay and purge). */
  take(predicate: (message: InProcessMessage) => boolean): InProcessMessage[] {
    const taken: InProcessMessage[] = [];
    for (let i = 0; i < this.ready.length; ) {
      if (predicate(this.ready[i]!.message)) taken.push(this.ready.splice(i, 1)[0]!.message);
      else i++;
    }
    return taken;
  }

  /** Starts delivering to `onDelivery`, at most `prefetch` unacked at a time. Returns the cancel function. */
  subscribe(onDelivery: (delivery: InProcessDelivery) => void, prefetch: number): () => void {
    const subscriber: Subscriber = { onDelivery, prefetch, unacked: 0, active: true };
    this.subscribers.push(subscriber);
    this.schedule();
    return () => {
      // Once only: a second call must not take another subscriber out.
      if (!subscriber.active) return;
      subscriber.active = false;
      this.subscribers.splice(this.subscribers.indexOf(subscriber), 1);
    };
  }

  /** Stops delivering (the broker closed): what is ready stays, nothing is handed out again. */
  close(): void {
    this.closed = true;
  }

  /** Deliveries happen on a later tick, never inside `push()`: like a broker, never re-entrant. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.deliver();
    });
  }

  private deliver(): void {
    while (!this.closed && this.ready.length > 0) {
      const subscriber = this.nextWithRoom();
      if (!subscriber) return;
      const { message, place } = this.ready.shift()!;
      subscriber.unacked++;
      this.unackedCount++;
      let settled = false;
      const settle = (requeue: boolean): void => {
        if (settled) return;
        settled = true;
        subscriber.unacked--;
        this.unackedCount--;
        if (requeue) {
          // Back in its place, as RabbitMQ puts a requeued message: messages given back one by one, in
          // whatever order, end up in the order they came.
          const at = this.ready.findIndex((entry) => entry.place > place);
          this.ready.splice(at === -1 ? this.ready.length : at, 0, { message: { ...message, redelivered: true }, place });
        }
        this.schedule();
      };
      subscriber.onDelivery({ message, ack: () => settle(false), requeue: () => settle(true) });
    }
  }

  private nextWithRoom(): Subscriber | undefined {
    for (let i = 0; i < this.subscribers.length; i++) {
      const candidate = this.subscribers[(this.next + i) % this.subscribers.length]!;
      if (candidate.active && candidate.unacked < candidate.prefetch) {
        this.next = (this.next + i + 1) % this.subscribers.length;
        return candidate;
      }
    }
    return undefined;
  }
}
