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
 * Closes a connection as `closeQuietly()` does, and destroys its socket once the broker's answer was
 * given up on: amqplib ends the socket only when the broker has answered the close, and an open socket
 * keeps the process alive (with heartbeats off, or a blocked connection the broker still sends
 * heartbeats on, for as long as it lasts).
 */
export async function closeConnectionQuietly(model: ChannelModel, timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
  const blocked = isBlockedByBroker(model);
  let closed = false;
  const onClose = (): void => {
    closed = true;
  };
  model.once('close', onClose);
  await closeQuietly(model, timeoutMs);
  model.off('close', onClose);
  if (!closed || blocked) destroySocket(model);
}

/**
 * Whether the broker blocks the connection (a memory or disk alarm). amqplib then closes it at once,
 * without asking the broker, and only ends its side of the socket: the broker, which reads nothing from
 * a blocked connection, never sees that end, and its heartbeats keep the socket, and the process, alive
 * until the alarm ends. Such a socket is destroyed.
 */
export function isBlockedByBroker(model: ChannelModel): boolean {
  return (model as unknown as { connection?: { blocked?: unknown } }).connection?.blocked === true;
}

/** Destroys a connection's socket (amqplib 2's `ChannelModel.connection.stream`), for a close given up on. */
export function destroySocket(model: ChannelModel): void {
  (model as unknown as { connection?: { stream?: { destroy?(): void } } }).connection?.stream?.destroy?.();
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
