import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';

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

  constructor(
    readonly spec: ManagedChannelSpec,
    private readonly log: { warn(message: string): void; error(message: string): void },
    private readonly reopenDelayMs: number,
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
    channel.on('error', (error: Error) => this.log.warn(`Channel "${this.spec.name}" error: ${error.message}`));
    channel.on('close', () => this.onClosed(channel, model));
    try {
      await this.spec.setup(channel);
    } catch (error) {
      await closeQuietly(channel);
      throw error;
    }
    this.channel = channel;
  }

  /** Closes the channel for good (shutdown). */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.reopenTimer);
    const channel = this.channel;
    this.channel = undefined;
    if (channel) await closeQuietly(channel);
  }

  /** Closes the channel and opens a fresh one (used when a channel is stuck, e.g. confirms stopped). */
  async recycle(): Promise<void> {
    const channel = this.channel;
    if (channel) await closeQuietly(channel);
  }

  private onClosed(channel: Channel, model: ChannelModel): void {
    if (this.channel === channel) this.channel = undefined;
    if (this.closing) return;
    // A channel-level error (e.g. a broker-side exception) may have closed only this channel: reopen it
    // on the same connection after a pause, so a persistent error cannot spin. If the whole connection
    // went instead, it is no longer live by then and its recovery reopens every channel.
    this.reopenTimer = setTimeout(() => {
      if (this.closing || this.channel || !this.isLive(model)) return;
      this.open(model).catch((error: unknown) => {
        this.log.error(`Reopening channel "${this.spec.name}" failed: ${(error as Error).message}`);
        this.onClosed(channel, model);
      });
    }, this.reopenDelayMs);
    this.reopenTimer.unref();
  }
}

async function closeQuietly(channel: Channel): Promise<void> {
  try {
    await channel.close();
  } catch {
    // Already closed: nothing to do.
  }
}
