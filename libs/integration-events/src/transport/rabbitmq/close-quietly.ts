import type { Channel, ChannelModel } from 'amqplib';

/** How long a close (or a consumer's cancel) may wait for the broker's answer before it is given up on. */
const CLOSE_TIMEOUT_MS = 2_000;

/**
 * Closes a channel or connection without ever hanging or throwing. amqplib's `close()` resolves only
 * when the broker answers CloseOk; on a half-dead connection that answer never comes (amqplib then
 * closes the channel locally without settling the call). So this waits for whichever comes first: the
 * call, the object's own `close` event, or a timeout.
 */
export function closeQuietly(closable: Channel | ChannelModel, timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
  return answeredOrGivenUp(closable, () => closable.close(), timeoutMs);
}

/**
 * Cancels a consumer the same way: on a half-dead connection, or one the broker has blocked (a memory
 * or disk alarm: it stops reading the socket), its CancelOk never comes either.
 */
export function cancelQuietly(channel: Channel, consumerTag: string, timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
  return answeredOrGivenUp(channel, () => channel.cancel(consumerTag), timeoutMs);
}

function answeredOrGivenUp(closable: Channel | ChannelModel, call: () => Promise<unknown>, timeoutMs: number): Promise<void> {
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
      call().then(done, done);
    } catch {
      done();
    }
  });
}
