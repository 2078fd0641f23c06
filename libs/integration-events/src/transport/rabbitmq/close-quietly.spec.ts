import { EventEmitter } from 'node:events';
import type { ChannelModel } from 'amqplib';
import { closeConnectionQuietly } from './close-quietly';

/**
 * A connection as amqplib 2 has it, closing as amqplib closes it: at once when the broker blocks it
 * (an alarm: only its side of the socket ended), else when the broker answers.
 */
function fakeConnection(blocked: boolean, answers: boolean): { model: ChannelModel; destroy: jest.Mock } {
  const destroy = jest.fn();
  const model = Object.assign(new EventEmitter(), {
    connection: { blocked, stream: { destroy } },
    close: () => {
      if (blocked || answers) {
        model.emit('close');
        return Promise.resolve();
      }
      return new Promise<void>(() => undefined);
    },
  });
  return { model: model as unknown as ChannelModel, destroy };
}

describe('closeConnectionQuietly', () => {
  it('leaves the socket to amqplib when the broker answered the close', async () => {
    const { model, destroy } = fakeConnection(false, true);
    await closeConnectionQuietly(model, 50);
    expect(destroy).not.toHaveBeenCalled();
  });

  it('destroys the socket of a close the broker never answered', async () => {
    const { model, destroy } = fakeConnection(false, false);
    await closeConnectionQuietly(model, 50);
    expect(destroy).toHaveBeenCalledTimes(1);
  });

  it('destroys the socket of a blocked connection, which amqplib closes without the broker, that reads nothing from it', async () => {
    const { model, destroy } = fakeConnection(true, false);
    await closeConnectionQuietly(model, 50);
    expect(destroy).toHaveBeenCalledTimes(1);
  });
});
