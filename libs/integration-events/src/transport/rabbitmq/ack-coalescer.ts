import type { Channel, Message } from 'amqplib';

/** What the coalescer needs of an amqplib channel. */
export type AckChannel = Pick<Channel, 'ack' | 'nack'>;

/**
 * Settles one channel's deliveries with as few frames as it can. Acks asked for during one turn of the
 * event loop are sent together at its end: the longest run of finished deliveries at the front of the
 * channel's unsettled ones goes as a single `basic.ack` with `multiple`, and any finished delivery
 * behind one still running is acked on its own, so a slow handler never holds another's ack back.
 * Handled in order — the common case — a turn's N acks cost the consumer and the broker one frame.
 *
 * `multiple` acks every unsettled delivery of the channel up to its tag, which is why every delivery is
 * `track`ed as it arrives: the run at the front only ever holds finished deliveries. A delivery that is
 * never settled (left to go back to the queue when the channel closes) stays at the front, and later
 * ones are then acked one by one. `flush()` sends what is pending at once (before the channel closes).
 */
export class AckCoalescer {
  /** Deliveries in arrival order (delivery tags increase), from `head` on; settled ones are skipped. */
  private readonly unsettled: Message[] = [];
  private head = 0;
  /** Tracked deliveries whose ack is due at the next flush. */
  private readonly finished = new Set<Message>();
  /** Tracked deliveries settled otherwise (nacked): skipped when they reach the front. */
  private readonly dropped = new Set<Message>();
  private scheduled: NodeJS.Immediate | undefined;

  constructor(
    private readonly channel: AckChannel,
    private readonly onError: (error: Error, messages: readonly Message[]) => void,
  ) {}

  /** Records a delivery as it arrives, before its handler runs. */
  track(message: Message): void {
    this.unsettled.push(message);
  }

  /** Acks `message` at the end of this turn of the event loop, with whatever else finished meanwhile. */
  ack(message: Message): void {
    this.finished.add(message);
    this.scheduled ??= setImmediate(() => this.flush());
  }

  /** Nacks `message` now; it no longer counts as unsettled. */
  nack(message: Message, requeue: boolean): void {
    this.dropped.add(message);
    this.channel.nack(message, false, requeue);
  }

  /** Sends the pending acks now. */
  flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    if (this.finished.size === 0) return;

    // The run of settled deliveries at the front: the finished ones among them go as one multiple ack.
    const run: Message[] = [];
    while (this.head < this.unsettled.length) {
      const message = this.unsettled[this.head]!;
      if (this.finished.delete(message)) {
        run.push(message);
      } else if (!this.dropped.delete(message)) {
        break;
      }
      this.head++;
    }
    if (this.head > 1_024 && this.head * 2 > this.unsettled.length) {
      this.unsettled.splice(0, this.head);
      this.head = 0;
    }
    if (run.length > 0) this.send(run);

    // Finished behind a delivery still running: one by one (they are taken out when they reach the front).
    for (const message of this.finished) {
      this.dropped.add(message);
      this.send([message]);
    }
    this.finished.clear();
  }

  /** Acks `messages`, consecutive unsettled deliveries of the channel: the last one, with `multiple` if more than one. */
  private send(messages: readonly Message[]): void {
    try {
      this.channel.ack(messages[messages.length - 1]!, messages.length > 1);
    } catch (error) {
      // The channel closed meanwhile: the broker redelivers these messages.
      this.onError(error as Error, messages);
    }
  }
}
