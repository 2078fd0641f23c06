import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { closeQuietly } from './close-quietly';

/** How a component asks for a channel that outlives connection and channel failures. */
export interface ManagedChannelSpec {
  /** For logs: what the channel is for (`publisher`, a queue name). */
  readonly name: string;
  /**
   * Declares what the channel needs (exchange, queue, bindings) and starts using it (consume).
   * Runs on every (re)open; throwing fails that open.
   */
  readonly setup: (channel: ConfirmChannel) => Promise<void>;
}

/**
 * A confirm channel kept open on the current connection: reopened (and set up again) after the
 * connection recovers, and on its own after a channel-level error while the connection stays up.
 * Holders read `current` each time they use it and never keep a channel across awaits.
 */
export class ManagedChannel {
  private channel: ConfirmChannel | undefined;
  private closing = false;
  private reopenTimer: NodeJS.Timeout | undefined;
  private failedReopens = 0;

  constructor(
    readonly spec: ManagedChannelSpec,
    private readonly log: { warn(message: string): void; error(message: string): void },
    private readonly reopenDelayMs: number,
    private readonly maxReopenDelayMs: number,
    /** Whether `model` is still the live connection; a channel of a dead one is left to recovery. */
    private readonly isLive: (model: ChannelModel) => boolean,
  ) {}

  /** The open channel, or `undefined` while there is none. */
  get current(): ConfirmChannel | undefined {
    return this.channel;
  }

  /** Opens the channel on `model` and runs its setup. Throws what the open or the setup threw. */
  async open(model: ChannelModel): Promise<void> {
    if (this.closing) return;
    clearTimeout(this.reopenTimer);
    const channel = await model.createConfirmChannel();
    let closed = false;
    let closedWith: Error | undefined;
    channel.on('error', (error: Error) => {
      closedWith ??= error;
      this.log.warn(`Channel "${this.spec.name}" error: ${error.message}`);
    });
    channel.on('close', () => {
      closed = true;
      this.onClosed(channel, model);
    });
    try {
      await this.spec.setup(channel);
    } catch (error) {
      await closeQuietly(channel);
      throw error;
    }
    if (this.closing) {
      // close() ran while this channel was being set up: it found nothing to close, so close it here.
      await closeQuietly(channel);
      return;
    }
    // The broker closed it as its setup's last answer came (amqplib handles the frames of one read at
    // once, so its close event can come before the setup resumes): kept, it would be taken for the open
    // channel for good, and the reopen its close asked for would find a channel and do nothing.
    if (closed) throw new Error(`The channel closed as soon as it was set up${closedWith ? `: ${closedWith.message}` : ''}`);
    this.channel = channel;
    this.failedReopens = 0;
  }

  /**
   * Opens the channel on `model`, and on failure keeps retrying on its own (with backoff) for as long
   * as `model` is live: one channel that cannot be set up must not stop the others.
   * @returns when the first attempt has ended, opened or not (it never rejects)
   */
  openOrRetry(model: ChannelModel): Promise<void> {
    return this.open(model).catch((error: unknown) => {
      this.log.error(`Opening channel "${this.spec.name}" failed: ${(error as Error).message}`);
      this.scheduleReopen(model);
    });
  }

  /** Closes the channel for good (shutdown). */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.reopenTimer);
    const channel = this.channel;
    this.channel = undefined;
    if (channel) await closeQuietly(channel);
  }

  /**
   * Closes the channel; a fresh one is opened after a pause (used when a channel is stuck, e.g. its
   * confirms stopped coming). Returns at once: it never waits on the broker.
   */
  recycle(): void {
    const channel = this.channel;
    this.channel = undefined;
    if (channel) void closeQuietly(channel);
  }

  private onClosed(channel: Channel, model: ChannelModel): void {
    if (this.channel === channel) this.channel = undefined;
    this.scheduleReopen(model);
  }

  /**
   * A channel-level error (e.g. a broker-side exception) may have closed only this channel: reopen it
   * on the same connection after a pause that grows with each failure, so a persistent error cannot
   * spin. If the whole connection went instead, it is no longer live by then and its recovery reopens
   * every channel.
   */
  private scheduleReopen(model: ChannelModel): void {
    if (this.closing) return;
    clearTimeout(this.reopenTimer);
    const delay = Math.min(this.maxReopenDelayMs, this.reopenDelayMs * 2 ** Math.min(this.failedReopens, 10));
    this.reopenTimer = setTimeout(() => {
      if (this.closing || this.channel || !this.isLive(model)) return;
      this.open(model).catch((error: unknown) => {
        this.failedReopens++;
        this.log.error(`Reopening channel "${this.spec.name}" failed (retrying in ${delay * 2} ms at most): ${(error as Error).message}`);
        this.scheduleReopen(model);
      });
    }, delay);
    this.reopenTimer.unref();
  }
}

