import type { Message } from 'amqplib';
import { AckCoalescer, acksHeldAtMost, type AckChannel } from './ack-coalescer';

/** A channel that records the frames it is asked to send, and can be made to fail. */
class RecordingChannel implements AckChannel {
  readonly frames: string[] = [];
  closed = false;
  ack(message: Message, allUpTo?: boolean): void {
    if (this.closed) throw new Error('Channel closed');
    this.frames.push(`ack ${message.fields.deliveryTag}${allUpTo ? ' multiple' : ''}`);
  }
  nack(message: Message, allUpTo?: boolean, requeue?: boolean): void {
    if (this.closed) throw new Error('Channel closed');
    this.frames.push(`nack ${message.fields.deliveryTag}${allUpTo ? ' multiple' : ''}${requeue ? ' requeue' : ''}`);
  }
}

const delivery = (tag: number): Message => ({ fields: { deliveryTag: tag }, properties: { messageId: `m${tag}` } }) as unknown as Message;
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

function setup(count: number) {
  const channel = new RecordingChannel();
  const errors: Array<{ error: string; tags: number[] }> = [];
  const acks = new AckCoalescer(channel, (error, messages) => errors.push({ error: error.message, tags: messages.map((m) => m.fields.deliveryTag) }));
  const messages = Array.from({ length: count }, (_, i) => delivery(i + 1));
  for (const message of messages) acks.track(message);
  return { channel, errors, acks, messages };
}

describe('AckCoalescer', () => {
  it('sends the acks of one turn, in order, as one multiple ack at the end of the turn', async () => {
    const { channel, acks, messages } = setup(5);
    for (const message of messages) acks.ack(message);
    expect(channel.frames).toEqual([]);
    await nextTurn();
    expect(channel.frames).toEqual(['ack 5 multiple']);
  });

  it('sends a single ack, without multiple, for one finished delivery', async () => {
    const { channel, acks, messages } = setup(3);
    acks.ack(messages[0]!);
    await nextTurn();
    expect(channel.frames).toEqual(['ack 1']);
  });

  it('never acks a delivery still running: those finished behind it are acked one by one', async () => {
    const { channel, acks, messages } = setup(5);
    // 1 finished, 2 still running, 3 and 5 finished.
    acks.ack(messages[0]!);
    acks.ack(messages[2]!);
    acks.ack(messages[4]!);
    await nextTurn();
    expect(channel.frames).toEqual(['ack 1', 'ack 3', 'ack 5']);

    // 2 and 4 finish: 2 and 3 (already acked) and 4 form the front run; 3 is not acked twice.
    channel.frames.length = 0;
    acks.ack(messages[3]!);
    acks.ack(messages[1]!);
    await nextTurn();
    expect(channel.frames).toEqual(['ack 4 multiple']);
  });

  it('skips nacked deliveries at the front and does not ack them', async () => {
    const { channel, acks, messages } = setup(4);
    acks.nack(messages[0]!, true);
    acks.ack(messages[1]!);
    acks.ack(messages[2]!);
    await nextTurn();
    expect(channel.frames).toEqual(['nack 1 requeue', 'ack 3 multiple']);
  });

  it('keeps a delivery that is never settled at the front: later ones are acked one by one, never with multiple', async () => {
    const { channel, acks, messages } = setup(4);
    for (const message of messages.slice(1)) acks.ack(message);
    await nextTurn();
    expect(channel.frames).toEqual(['ack 2', 'ack 3', 'ack 4']);
  });

  it('flush() sends the pending acks at once, and nothing is sent twice at the end of the turn', async () => {
    const { channel, acks, messages } = setup(2);
    acks.ack(messages[0]!);
    acks.ack(messages[1]!);
    acks.flush();
    expect(channel.frames).toEqual(['ack 2 multiple']);
    await nextTurn();
    expect(channel.frames).toEqual(['ack 2 multiple']);
  });

  it('reports the deliveries an ack on a closed channel covered, and carries on', async () => {
    const { channel, errors, acks, messages } = setup(3);
    channel.closed = true;
    for (const message of messages) acks.ack(message);
    await nextTurn();
    expect(errors).toEqual([{ error: 'Channel closed', tags: [1, 2, 3] }]);
  });

  it('keeps its memory bounded over a long run of deliveries', async () => {
    const channel = new RecordingChannel();
    const acks = new AckCoalescer(channel, () => undefined);
    for (let tag = 1; tag <= 10_000; tag++) {
      const message = delivery(tag);
      acks.track(message);
      acks.ack(message);
      if (tag % 10 === 0) await nextTurn();
    }
    expect(channel.frames).toHaveLength(1_000);
    expect(channel.frames.at(-1)).toBe('ack 10000 multiple');
    expect((acks as unknown as { unsettled: Map<Message, boolean> }).unsettled.size).toBe(0);
  });

  it('holds only what the broker counts as unacknowledged when the oldest delivery is never settled', async () => {
    const channel = new RecordingChannel();
    const acks = new AckCoalescer(channel, () => undefined);
    acks.track(delivery(1)); // never settled (left to go back to the queue)
    for (let tag = 2; tag <= 5_000; tag++) {
      const message = delivery(tag);
      acks.track(message);
      acks.ack(message);
      if (tag % 10 === 0) await nextTurn();
    }
    await nextTurn();
    expect(channel.frames).toHaveLength(4_999);
    expect(channel.frames.every((frame) => !frame.includes('multiple'))).toBe(true);
    expect((acks as unknown as { unsettled: Map<Message, boolean> }).unsettled.size).toBe(1);
  });

  describe('with a window (consumer.ackDelayMs)', () => {
    beforeEach(() => jest.useFakeTimers());
    afterEach(() => jest.useRealTimers());

    function windowed(count: number, windowMs: number, flushAt = Infinity) {
      const channel = new RecordingChannel();
      const acks = new AckCoalescer(channel, () => undefined, windowMs, flushAt);
      const messages = Array.from({ length: count }, (_, i) => delivery(i + 1));
      for (const message of messages) acks.track(message);
      return { channel, acks, messages };
    }

    it('holds acks of separate turns until the window has passed, then sends them as one frame', () => {
      const { channel, acks, messages } = windowed(3, 5);
      acks.ack(messages[0]!);
      jest.advanceTimersByTime(2); // turns go by; a message arriving alone ends one
      acks.ack(messages[1]!);
      jest.advanceTimersByTime(2);
      acks.ack(messages[2]!);
      expect(channel.frames).toEqual([]);
      jest.advanceTimersByTime(1); // 5 ms after the first ack
      expect(channel.frames).toEqual(['ack 3 multiple']);
      jest.advanceTimersByTime(50);
      expect(channel.frames).toEqual(['ack 3 multiple']);
    });

    it('sends at the end of the turn once flushAt acks are waiting, without waiting for the window', () => {
      const { channel, acks, messages } = windowed(5, 1_000, 2);
      acks.ack(messages[0]!);
      jest.advanceTimersByTime(0);
      expect(channel.frames).toEqual([]);
      acks.ack(messages[1]!);
      expect(channel.frames).toEqual([]);
      jest.advanceTimersByTime(0); // the end of the turn
      expect(channel.frames).toEqual(['ack 2 multiple']);
      // The count starts again: the next one waits for a window of its own.
      acks.ack(messages[2]!);
      jest.advanceTimersByTime(999);
      expect(channel.frames).toEqual(['ack 2 multiple']);
      jest.advanceTimersByTime(1);
      expect(channel.frames).toEqual(['ack 2 multiple', 'ack 3']);
    });

    it('still sends a burst of one turn as one frame when every ack is due at once (flushAt 1)', () => {
      const { channel, acks, messages } = windowed(4, 1_000, 1);
      for (const message of messages) acks.ack(message);
      expect(channel.frames).toEqual([]);
      jest.advanceTimersByTime(0);
      expect(channel.frames).toEqual(['ack 4 multiple']);
    });

    it('counts an ack asked for twice once', () => {
      const { channel, acks, messages } = windowed(3, 1_000, 2);
      acks.ack(messages[0]!);
      acks.ack(messages[0]!);
      expect(channel.frames).toEqual([]);
    });

    it('sends what is waiting on flush() (shutdown), and nothing again when the window ends', () => {
      const { channel, acks, messages } = windowed(2, 1_000);
      acks.ack(messages[0]!);
      acks.ack(messages[1]!);
      acks.flush();
      expect(channel.frames).toEqual(['ack 2 multiple']);
      jest.advanceTimersByTime(1_000);
      expect(channel.frames).toEqual(['ack 2 multiple']);
    });
  });

  it('lets acks wait only while the broker can still fill every call slot and keep the next deliveries here', () => {
    expect(acksHeldAtMost(50, 10)).toBe(25); // the defaults: half the prefetch
    expect(acksHeldAtMost(12, 10)).toBe(2); // what the prefetch leaves beyond the calls
    expect(acksHeldAtMost(10, 10)).toBe(1); // nothing to spare: at once
    expect(acksHeldAtMost(1, 1)).toBe(1); // one at a time, in order
    expect(acksHeldAtMost(3, 1)).toBe(1);
  });
});
