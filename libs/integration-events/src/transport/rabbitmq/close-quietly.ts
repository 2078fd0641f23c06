import type { Channel, ChannelModel } from 'amqplib';

/** How long a close may wait for the broker's CloseOk before it is given up on. */
const CLOSE_TIMEOUT_MS = 2_000;

/**
 * Closes a channel or connection without ever hanging or throwing. amqplib's `close()` resolves only
 * when the broker answers CloseOk; on a half-dead connection that answer never comes (amqplib then
 * closes the channel locally without settling the call). So this waits for whichever comes first: the
 * call, the object's own `close` event, or a timeout.
 */
export function closeQuietly(closable: Channel | ChannelModel, timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(timer);
      closable.off('close', done);
      resolve();
    };
    timer = setTimeout(done, timeoutMs);
    timer.unref();
    closable.once('close', done);
    try {
      closable.close().then(done, done);
    } catch {
      done();
    }
  });
}
