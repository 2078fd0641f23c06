import type { Channel, Message } from 'amqplib';

/** What the coalescer needs of an amqplib channel. */
export type AckChannel = Pick<Channel, 'ack' | 'nack'>;

/**
 * Settles one channel's deliveries with as few frames as it can. An ack waits up to `windowMs`
 * (`consumer.ackDelayMs`; 0: to the end of the event loop's turn) for others, and the acks due then are
 * sent together: the finished deliveries older than every delivery still running go as a single
 * `basic.ack` with `multiple`, and any finished delivery younger than one still running is acked on its
 * own, so a slow handler never holds another's ack back. Handled in order — the common case — N acks
 * cost the consumer and the broker one frame. Messages arriving one at a time (a steady trickle) each
 * end a turn of their own, which is why the window is measured in time and not in turns. Once
 * `flushAt` acks are waiting they go at the end of the turn without waiting for the window: the broker
 * sends no more than the prefetch unacknowledged, and waiting acks must not leave the calls idle.
 *
 * `multiple` acks every unsettled delivery of the channel up to its tag, which is why every delivery is
 * `track`ed as it arrives: what it covers is only ever finished deliveries (or ones already settled,
 * which the broker ignores). A delivery that is never settled (left to go back to the queue when the
 * channel closes) only stops later ones from joining a multiple ack. Memory is bounded by the prefetch:
 * only deliveries the broker still counts as unacknowledged are held. `flush()` sends what is pending at
 * once (before the channel closes).
 */
export class AckCoalescer {
  /** Unsettled deliveries in arrival (delivery tag) order: true once finished, due for an ack. */
  private readonly unsettled = new Map<Message, boolean>();
  private scheduled: { readonly atTurnEnd: boolean; cancel(): void } | undefined;
  /** Finished deliveries whose ack has not been sent yet. */
  private due = 0;

  constructor(
    private readonly channel: AckChannel,
    private readonly onError: (error: Error, messages: readonly Message[]) => void,
    private readonly windowMs = 0,
    private readonly flushAt = Infinity,
  ) {}

  /** Records a delivery as it arrives, before its handler runs. */
  track(message: Message): void {
    this.unsettled.set(message, false);
  }

  /** Acks `message` once the window has passed, with whatever else finished meanwhile (at the end of the turn once `flushAt` are due). */
  ack(message: Message): void {
    if (!this.unsettled.has(message)) {
      // Not tracked (cannot happen through the consumer): never let it join a multiple ack.
      this.send([message]);
      return;
    }
    if (this.unsettled.get(message) === true) return;
    this.unsettled.set(message, true);
    const atTurnEnd = ++this.due >= this.flushAt || this.windowMs <= 0;
    if (this.scheduled?.atTurnEnd === false && atTurnEnd) {
      this.scheduled.cancel();
      this.scheduled = undefined;
    }
    this.scheduled ??= this.schedule(atTurnEnd);
  }

  /** Nacks `message` now; it no longer counts as unsettled. */
  nack(message: Message, requeue: boolean): void {
    if (this.unsettled.get(message) === true) this.due--;
    this.unsettled.delete(message);
    this.channel.nack(message, false, requeue);
  }

  /** Sends the pending acks now. */
  flush(): void {
    this.scheduled?.cancel();
    this.scheduled = undefined;
    this.due = 0;

    // Finished and older than every delivery still running: one multiple ack. Finished but younger
    // than one still running: one by one.
    const older: Message[] = [];
    const younger: Message[] = [];
    let running = false;
    for (const [message, finished] of this.unsettled) {
      if (!finished) running = true;
      else (running ? younger : older).push(message);
    }
    for (const message of older) this.unsettled.delete(message);
    for (const message of younger) this.unsettled.delete(message);
    if (older.length > 0) this.send(older);
    for (const message of younger) this.send([message]);
  }

  /** Calls `flush()` at the end of this turn of the event loop, or once the window has passed. */
  private schedule(atTurnEnd: boolean): { readonly atTurnEnd: boolean; cancel(): void } {
    if (atTurnEnd) {
      const immediate = setImmediate(() => this.flush());
      return { atTurnEnd, cancel: () => clearImmediate(immediate) };
    }
    // Not the process's reason to stay up: shutdown flushes before closing the channel.
    const timer = setTimeout(() => this.flush(), this.windowMs).unref();
    return { atTurnEnd, cancel: () => clearTimeout(timer) };
  }

  /** Acks `messages`, finished deliveries of the channel in tag order: the last one, with `multiple` if more than one. */
  private send(messages: readonly Message[]): void {
    try {
      this.channel.ack(messages[messages.length - 1]!, messages.length > 1);
    } catch (error) {
      // The channel closed meanwhile: the broker redelivers these messages.
      this.onError(error as Error, messages);
    }
  }
}

/**
 * How many acks may wait for the window before they go at the end of the turn: the broker sends no more than the
 * prefetch unacknowledged, so waiting acks must leave it enough to keep every call slot busy (the
 * prefetch beyond `concurrency`) and the next deliveries already here (half the prefetch).
 */
export function acksHeldAtMost(prefetch: number, concurrency: number): number {
  return Math.max(1, Math.min(Math.floor(prefetch / 2), prefetch - concurrency));
}
