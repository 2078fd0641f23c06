import type { Channel, Message } from 'amqplib';

/** What the coalescer needs of an amqplib channel. */
export type AckChannel = Pick<Channel, 'ack' | 'nack'>;

/**
 * Settles one channel's deliveries with as few frames as it can. Acks asked for during one turn of the
 * event loop are sent together at its end: the finished deliveries older than every delivery still
 * running go as a single `basic.ack` with `multiple`, and any finished delivery younger than one still
 * running is acked on its own, so a slow handler never holds another's ack back. Handled in order — the
 * common case — a turn's N acks cost the consumer and the broker one frame.
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
  private scheduled: NodeJS.Immediate | undefined;

  constructor(
    private readonly channel: AckChannel,
    private readonly onError: (error: Error, messages: readonly Message[]) => void,
  ) {}

  /** Records a delivery as it arrives, before its handler runs. */
  track(message: Message): void {
    this.unsettled.set(message, false);
  }

  /** Acks `message` at the end of this turn of the event loop, with whatever else finished meanwhile. */
  ack(message: Message): void {
    if (!this.unsettled.has(message)) {
      // Not tracked (cannot happen through the consumer): never let it join a multiple ack.
      this.send([message]);
      return;
    }
    this.unsettled.set(message, true);
    this.scheduled ??= setImmediate(() => this.flush());
  }

  /** Nacks `message` now; it no longer counts as unsettled. */
  nack(message: Message, requeue: boolean): void {
    this.unsettled.delete(message);
    this.channel.nack(message, false, requeue);
  }

  /** Sends the pending acks now. */
  flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;

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
