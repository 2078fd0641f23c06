import { EventEmitter } from 'node:events';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { ManagedChannel } from './managed-channel';

/** A channel that only emits events and answers close; what ManagedChannel uses of one. */
class FakeChannel extends EventEmitter {
  closeCalls = 0;
  close(): Promise<void> {
    this.closeCalls++;
    return Promise.resolve();
  }
}

/** A connection that hands out fake channels and records them. */
function fakeModel() {
  const channels: FakeChannel[] = [];
  const model = {
    createConfirmChannel: () => {
      const channel = new FakeChannel();
      channels.push(channel);
      return Promise.resolve(channel as unknown as ConfirmChannel);
    },
  } as unknown as ChannelModel;
  return { model, channels };
}

const until = async (condition: () => boolean, deadlineMs = 2_000): Promise<void> => {
  const deadline = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

describe('ManagedChannel', () => {
  const log = { warn: jest.fn(), error: jest.fn() };

  it('does not keep a channel the broker closed as its setup ended, and opens a fresh one', async () => {
    const { model, channels } = fakeModel();
    let setups = 0;
    const managed = new ManagedChannel(
      {
        name: 'orders',
        setup: async (channel) => {
          setups++;
          // The first setup's last answer and the broker's close come in one read: the close event fires
          // before the setup resumes.
          if (setups === 1) {
            (channel as unknown as FakeChannel).emit('error', new Error('Channel closed by server: 406 (PRECONDITION-FAILED)'));
            (channel as unknown as FakeChannel).emit('close');
          }
          await Promise.resolve();
        },
      },
      log,
      10,
      100,
      () => true,
    );
    await managed.openOrRetry(model);
    expect(managed.current).toBeUndefined();
    await until(() => managed.current !== undefined);
    expect(channels).toHaveLength(2);
    expect(managed.current).toBe(channels[1]);
    expect(log.error).toHaveBeenCalledWith(
      expect.stringContaining('Opening channel "orders" failed: The channel closed as soon as it was set up: Channel closed by server: 406 (PRECONDITION-FAILED)'),
    );
    await managed.close();
  });

  it('keeps a channel whose setup ended with it open', async () => {
    const { model, channels } = fakeModel();
    const managed = new ManagedChannel({ name: 'orders', setup: () => Promise.resolve() }, log, 10, 100, () => true);
    await managed.open(model);
    expect(managed.current).toBe(channels[0]);
    await managed.close();
    expect(channels[0]!.closeCalls).toBe(1);
  });
});
