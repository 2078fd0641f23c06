import { Injectable, Logger } from '@nestjs/common';
import * as amqp from 'amqplib';
import type { ChannelModel, ConfirmChannel, RecoveringChannelModel } from 'amqplib';
import { BrokerConnectionError } from '../../errors/broker-connection.error';
import { IntegrationEventsError } from '../../errors/integration-events.error';
import { TransportNotReadyError } from '../../errors/transport-not-ready.error';
import { IntegrationEventsConfig } from '../../options/integration-events.config';
import { MIN_FRAME_MAX } from '../../options/resolve-options';
import { redactSecrets } from '../../util/redact-url';
import { closeConnectionQuietly, closeQuietly, destroySocket, isBlockedByBroker } from './close-quietly';
import { ManagedChannel, type ManagedChannelSpec } from './managed-channel';

/**
 * Socket-level failures: the broker is not there (yet). Waiting fixes these; nothing else. A host name
 * that does not resolve is among them: a container or a Kubernetes service without a ready pod has no
 * DNS record while it restarts (a misspelt one never comes: the warning names the host).
 */
const TRANSIENT_CODES = new Set([
  'ENOTFOUND',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EPIPE',
]);

/** What a connection carries (see `RabbitMqConnection`). */
export type RabbitMqConnectionRole = 'consuming' | 'publishing';

/**
 * One of the service's two RabbitMQ connections: this one, the consuming connection, carries the
 * handlers' consumer channels (their topology, deliveries and acks); `RabbitMqPublishingConnection`
 * carries everything that publishes. RabbitMQ blocks a connection that publishes during a memory or
 * disk alarm and then reads nothing more from it, acks included: on a shared connection one publish
 * would stop every consumer of the service, though consuming is what frees the broker's memory.
 *
 * Reconnection is amqplib's own (`recovery` option: backoff with jitter, forever); this class adds what
 * amqplib leaves to its users: reopening every managed channel (and so re-declaring topology and
 * re-subscribing consumers) on each new connection, and telling a broker that is merely down at boot
 * from one that refuses us.
 */
@Injectable()
export class RabbitMqConnection {
  protected readonly role: RabbitMqConnectionRole = 'consuming';
  private readonly logger = new Logger('IntegrationEvents:RabbitMQ');
  private readonly channels: ManagedChannel[] = [];
  private recovering: RecoveringChannelModel | undefined;
  private model: ChannelModel | undefined;
  private connectedOnce = false;
  /**
   * True until `connect()` has returned: only a connection made while boot waits for it must open every
   * channel (a topology conflict then fails boot); any later one, the first included when the broker was
   * down at boot, opens each channel on its own.
   */
  private booting = true;
  /** Every managed channel's first open on the current connection has been tried. */
  private channelsTried = false;
  private blocked = false;
  /** `close()` was called: for good, no connection is made after it. */
  private closed = false;
  /** The connection whose channels are being opened (see `setup()`), not yet `model`. */
  private modelInSetup: ChannelModel | undefined;

  /**
   * Called after each connection's setup completed, and when the broker unblocks it (the relay is woken
   * by it, instead of at its next poll).
   */
  onConnected: (() => void) | undefined;

  constructor(private readonly config: IntegrationEventsConfig) {}

  /**
   * True while a connection is open and every managed channel has been tried on it: this service's
   * queues and bindings (those that could be declared) exist, so what is published now reaches them.
   */
  get isConnected(): boolean {
    return this.model !== undefined && this.channelsTried;
  }

  /**
   * True while the broker has blocked publishing on this connection (a memory or disk alarm): publishes
   * would sit in buffers, so the relay waits instead.
   */
  get isBlocked(): boolean {
    return this.blocked;
  }

  /** Whether any channel is kept on this connection (a service without handlers opens no consuming connection). */
  get isInUse(): boolean {
    return this.channels.length > 0;
  }

  /**
   * Registers a channel to keep open. Register before `connect()`; a channel registered later is
   * opened on the current connection straight away.
   */
  manage(spec: ManagedChannelSpec): ManagedChannel {
    const channel = new ManagedChannel(spec, this.logger, 1_000, 30_000, (model) => model === this.model);
    this.channels.push(channel);
    if (this.model) void channel.openOrRetry(this.model);
    return channel;
  }

  /**
   * A short-lived confirm channel on the current connection, for one-off operations (dead-letter
   * replay). The caller closes it.
   * @throws TransportNotReadyError while disconnected
   */
  async openChannel(): Promise<ConfirmChannel> {
    if (!this.model) throw new TransportNotReadyError();
    const channel = await this.model.createConfirmChannel();
    channel.on('error', (error: Error) => this.logger.warn(`Operations channel error: ${error.message}`));
    return channel;
  }

  /** Stops keeping a channel and closes it. */
  async release(channel: ManagedChannel): Promise<void> {
    const index = this.channels.indexOf(channel);
    if (index >= 0) this.channels.splice(index, 1);
    await channel.close();
  }

  /**
   * Starts connecting and waits for the first attempt. Resolves when connected, or when the broker is
   * unreachable (a warning is logged and amqplib keeps retrying in the background: the service starts
   * without its broker and catches up when it comes). Rejects with `BrokerConnectionError` when the
   * broker answers but refuses: bad credentials, unknown vhost, a topology conflict.
   */
  async connect(): Promise<void> {
    const rabbitmq = this.config.options.rabbitmq!;
    const closedDuringBoot = (): Error =>
      new IntegrationEventsError(`The RabbitMQ connection (${this.role}) was closed before it was established: the application is shutting down`);
    const { clientProperties, ...socketOptions } = rabbitmq.socketOptions as { clientProperties?: Record<string, unknown> };
    const recovering = await this.recoveringConnection(this.urlWithHeartbeat(), {
      timeout: 10_000,
      ...socketOptions,
      clientProperties: { ...clientProperties, connection_name: `${rabbitmq.connectionName} (${this.role})` },
      recovery: {
        waitForConnect: false,
        initialDelay: rabbitmq.reconnectInitialDelayMs,
        maxDelay: rabbitmq.reconnectMaxDelayMs,
        maxRetries: Infinity,
        setup: (model: ChannelModel) => this.setup(model),
      },
    });
    if (this.closed) {
      // close() ran before or while amqplib was being asked: it found nothing to close.
      await recovering.close().catch(() => undefined);
      throw closedDuringBoot();
    }
    this.recovering = recovering;
    recovering.on('error', (error: Error) => this.logger.warn(`Connection error (${this.role}): ${this.describe(error)}`));
    recovering.on('blocked', (reason: string) => {
      this.blocked = true;
      this.logger.warn(
        `The broker blocked the ${this.role} connection (${reason})` +
          (this.role === 'publishing' ? '; the relay waits until it is unblocked, the consumers go on' : ''),
      );
    });
    recovering.on('unblocked', () => {
      this.blocked = false;
      this.logger.log(`The broker unblocked the ${this.role} connection`);
      this.onConnected?.();
    });
    recovering.on('disconnect', (error: Error) => {
      this.model = undefined;
      this.blocked = false;
      this.logger.warn(`Disconnected from ${rabbitmq.redactedUrl} (${this.role}): ${this.describe(error)}; reconnecting`);
    });
    recovering.on('reconnect-scheduled', ({ attempt, delay }: { attempt: number; delay: number }) =>
      this.logger.debug?.(`Reconnect attempt ${attempt} in ${delay} ms`),
    );

    await new Promise<void>((resolve, reject) => {
      const onConnect = (): void => {
        cleanup();
        this.booting = false;
        resolve();
      };
      const onFailed = (error: Error): void => {
        cleanup();
        if (isTransient(error)) {
          this.booting = false;
          this.logger.warn(
            `RabbitMQ at ${rabbitmq.redactedUrl} is unreachable (${this.describe(error)}); starting anyway and ` +
              'retrying in the background. Outbox rows wait until it is back.',
          );
          resolve();
        } else {
          recovering.close().catch(() => undefined);
          this.recovering = undefined;
          reject(new BrokerConnectionError(rabbitmq.redactedUrl, `${this.describe(error)}${vhostHint(error, rabbitmq.url)}`));
        }
      };
      const cleanup = (): void => {
        recovering.off('connect', onConnect);
        recovering.off('connect-failed', onFailed);
      };
      recovering.on('connect', onConnect);
      recovering.on('connect-failed', onFailed);
      // Closed meanwhile (app.close() during app.init()): amqplib closes a connection its attempt then
      // makes without reporting it either way, and only this says so.
      recovering.waitForConnect().catch(() => {
        if (!this.closed) return;
        cleanup();
        this.booting = false;
        reject(closedDuringBoot());
      });
    });
    recovering.on('connect-failed', (error: Error) => this.logger.warn(`Connecting failed (${this.role}): ${this.describe(error)}`));
  }

  /** amqplib's connection with its own recovery; asked for here, where a test can make `close()` run meanwhile. */
  protected recoveringConnection(url: string, options: amqp.SocketOptions & { recovery: amqp.RecoveryOptions }): Promise<RecoveringChannelModel> {
    return amqp.connect(url, options);
  }

  /** Closes every channel, then the connection (and stops reconnecting). Never waits long on a dead broker. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.channels.splice(0).map((channel) => channel.close()));
    const recovering = this.recovering;
    const model = this.model;
    const inSetup = this.modelInSetup !== model ? this.modelInSetup : undefined;
    this.recovering = undefined;
    this.model = undefined;
    if (inSetup) await closeConnectionQuietly(inSetup);
    if (!recovering) return;
    // amqplib's close waits for the broker's CloseOk; on a half-dead connection that never comes.
    const blocked = model !== undefined && isBlockedByBroker(model);
    let modelClosed = false;
    model?.once('close', () => (modelClosed = true));
    const closed = recovering.close().catch(() => undefined);
    if (model) await closeQuietly(model);
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
    // Given up on: amqplib ends its socket only once the broker has answered, and an open socket keeps
    // the process alive (with heartbeats off, for as long as TCP takes to give up); so does a blocked
    // one, closed at once (see isBlockedByBroker).
    if (model && (!modelClosed || blocked)) destroySocket(model);
  }

  /**
   * Runs on every new connection, before amqplib reports it connected. On the connection boot waits for,
   * every channel must open (a throw fails boot: a topology conflict is a configuration error). On any
   * later one, including the first after a broker that was down at boot, each channel opens on its own
   * and retries on its own, so one queue that cannot be set up never keeps the others (or the relay)
   * from working.
   */
  private async setup(model: ChannelModel): Promise<void> {
    // What the URL asks for is checked at boot; a broker set to a smaller frame_max lowers it here.
    const frameMax = (model.connection as unknown as { frameMax?: unknown }).frameMax;
    if (typeof frameMax === 'number' && frameMax < MIN_FRAME_MAX) {
      throw new Error(
        `The broker limits frames to ${frameMax} bytes (its frame_max): the library needs at least ${MIN_FRAME_MAX} (RabbitMQ's ` +
          "default), as a message's headers travel in one frame; raise frame_max in rabbitmq.conf",
      );
    }
    model.on('handler-error', (error: Error, event: string) =>
      this.logger.error(`A "${event}" listener threw: ${this.describe(error)}`),
    );
    this.channelsTried = false;
    // amqplib listens to the connection only once setup has returned. Without an 'error' listener
    // meanwhile, a connection that dies during setup throws from its socket handler before it closes
    // its channels, so their pending opens (and this setup) would hang; and a close meanwhile must fail
    // the setup (as a transient failure: amqplib connects again), or the dead connection would be taken
    // for a live one and never replaced.
    let cause: Error | undefined;
    model.on('error', (error: Error) => (cause ??= error));
    let closed = false;
    const onClose = (): void => {
      closed = true;
      // Dead from now on: channel reopen timers and one-off channels must not use it.
      if (this.model === model) this.model = undefined;
    };
    model.once('close', onClose);
    const closedError = (): Error =>
      new Error(`The connection closed while its channels were being opened${cause ? `: ${this.describe(cause)}` : ''}`);
    // close() meanwhile (shutdown during boot) closes it too: its opens would otherwise wait on a broker
    // that may never answer, and it would be kept once they end.
    this.modelInSetup = model;
    try {
      if (!this.booting) {
        this.model = model;
        await Promise.all(this.channels.map((channel) => channel.openOrRetry(model)));
      } else {
        for (const channel of this.channels) await channel.open(model);
        this.model = model;
      }
    } catch (error) {
      // On the connection boot waits for, a channel's open fails when the connection dies under it:
      // that is the connection's failure, not a refusal.
      throw closed ? closedError() : error;
    } finally {
      model.off('close', onClose);
      if (this.modelInSetup === model) this.modelInSetup = undefined;
    }
    if (closed || this.closed) {
      if (this.model === model) this.model = undefined;
      if (closed) throw closedError();
      // close() may have missed it (it read the model once this setup had dropped it): closed here,
      // within close()'s time limit, not left to amqplib's close, which has none.
      await closeConnectionQuietly(model);
      throw new Error('The connection was closed while its channels were being opened');
    }
    this.channelsTried = true;
    this.onConnected?.();
    this.logger.log(
      `${this.connectedOnce ? 'Reconnected' : 'Connected'} to ${this.config.options.rabbitmq!.redactedUrl} ` +
        `(${this.role}, ${this.channels.length} channel${this.channels.length === 1 ? '' : 's'})`,
    );
    this.connectedOnce = true;
  }

  private urlWithHeartbeat(): string {
    const { url, heartbeatSeconds } = this.config.options.rabbitmq!;
    const parsed = new URL(url);
    if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(heartbeatSeconds));
    return parsed.toString();
  }

  private describe(error: unknown): string {
    const message = error instanceof Error ? error.message : String(error);
    return redactSecrets(message, this.config.options.rabbitmq!.url);
  }
}

/**
 * What amqplib leaves out when the broker closes the connection instead of opening its virtual host
 * ("Expected ConnectionOpenOk; got <ConnectionClose channel:0>", the broker's reason dropped): the
 * vhost does not exist, or the user may not use it.
 */
function vhostHint(error: Error, url: string): string {
  if (!/Expected ConnectionOpenOk; got <ConnectionClose/.test(error.message)) return '';
  let vhost = '/';
  try {
    const path = new URL(url).pathname.slice(1);
    if (path) vhost = decodeURIComponent(path);
  } catch {
    // The URL was checked at boot; the default vhost is what amqplib asked for otherwise.
  }
  return (
    ` (the broker refused the virtual host ${JSON.stringify(vhost)}: it does not exist, or the user has no ` +
    'permissions on it, or it takes no more connections; see `rabbitmqctl list_vhosts` and `rabbitmqctl list_permissions -p <vhost>`)'
  );
}

function isTransient(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  if (code && TRANSIENT_CODES.has(code)) return true;
  // amqplib's recovery re-wraps socket errors into plain Errors whose message still names the code.
  if ([...TRANSIENT_CODES].some((transient) => error.message.includes(transient))) return true;
  // The broker accepted the socket but hung up during the handshake: it is starting or stopping.
  return /Socket closed abruptly|socket hang up|Connection closed/i.test(error.message);
}

/**
 * The service's publishing connection: the relay's channel, the consumers' retry and dead-letter copies,
 * and the dead-letter queue operations. A broker alarm blocks only this one (see `RabbitMqConnection`).
 */
@Injectable()
export class RabbitMqPublishingConnection extends RabbitMqConnection {
  protected override readonly role: RabbitMqConnectionRole = 'publishing';
}
