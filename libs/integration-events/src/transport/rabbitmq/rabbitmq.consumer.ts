import { printable, printableId } from '../../util/printable';
import { Logger } from '@nestjs/common';
import { unlimitedAbortController } from '../../util/unlimited-abort-controller';
import type { ConfirmChannel, ConsumeMessage, Message, Options } from 'amqplib';
import type { Disposition } from '../../consumer/disposition';
import { callDeadLetterHook } from '../../dead-letter/dead-letter-hook';
import { MessageHeaders } from '../../envelope/message-headers';
import { deadLetterHeaders, retryCopyHeaders, smallerCopyHeaders, toDeadLetter } from '../../dead-letter/failure-headers';
import type { DiscoveredHandler } from '../../discovery/discovered-handler';
import type { ResolvedIntegrationEventsOptions } from '../../options/resolved-options';
import type { ConsumerCallbacks } from '../integration-event-transport';
import { AckCoalescer, acksHeldAtMost } from './ack-coalescer';
import { cancelQuietly, closeQuietly } from './close-quietly';
import { copyProperties, droppedHeadersWithProperties, withEncodableProperties, isEncodingError } from './copy-properties';
import { declareHandlerTopology, waitQueueName } from './handler-topology';
import { RETURN_TO_QUEUE_PAUSE_MS } from '../return-to-queue-pause';
import type { ManagedChannel } from './managed-channel';
import type { RabbitMqConnection } from './rabbitmq.connection';
import { ReusedHeadersTable } from './reused-headers-table';

/** A consumer's subscription on one channel: its acks, and the deliveries waiting for a free call slot. */
interface Subscription {
  readonly channel: ConfirmChannel;
  tag: string;
  readonly acks: AckCoalescer;
  readonly waiting: ConsumeMessage[];
  /** Its channel is closing (recycled): nothing more starts from it. */
  retired: boolean;
  /**
   * Its channel has closed: the broker has put the deliveries it had not been told about back in their
   * queue (to be delivered again), unless `cancelled`.
   */
  closed: boolean;
  /** The broker cancelled the consumer (as it does when its queue is deleted): the deliveries in hand went with the queue. */
  cancelled: boolean;
}


/**
 * Consumes one handler's queue on its own confirm channel (one handler's prefetch and failures never
 * touch another's). At most `concurrency` calls run at once; the rest of the `prefetch` deliveries wait
 * in arrival order, so a call that ends finds the next message already here instead of waiting a round
 * trip to the broker. The message is settled only after the handler is done with it:
 *
 * - handled → ack;
 * - failed, retryable → a copy with the next attempt number goes to the wait queue of its delay's tier,
 *   and once the broker confirmed the copy, the original is acked;
 * - given up → a copy goes to the dead-letter queue, confirmed, then the original is acked and
 *   `onDeadLetter` is called.
 *
 * "Publish, wait for the confirm, then ack": a crash in between may duplicate a message, never lose it.
 * Acks go through an `AckCoalescer`: those of `consumer.ackDelayMs` leave as one frame.
 * On shutdown it stops taking deliveries, fires the handlers' abort signal and waits for the handlers in
 * flight; anything not settled returns to the queue when the channel closes.
 */
export class RabbitMqConsumer {
  private readonly logger = new Logger('IntegrationEvents:Consumer');
  private channel: ManagedChannel | undefined;
  /** Where retry and dead-letter copies are published: a channel of the publishing connection. */
  private copies: ManagedChannel | undefined;
  /** The subscription on the current channel; a new one after each reconnect. */
  private consumer: Subscription | undefined;
  /**
   * A subscription confirmed after stop() began (see `subscribe` in `start()`): cancelled at once, but
   * calls it started before the stop may still run, and their acks must be sent before the channel goes.
   */
  private lateSubscription: Subscription | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  /** Fired at shutdown; running calls (and, on SQLite, calls waiting for their inbox turn) listen to it. */
  private readonly abort = unlimitedAbortController();
  /** The headers of every retry and dead-letter copy, refilled just before its `sendToQueue()`. */
  private readonly copyHeaders = new ReusedHeadersTable();
  /**
   * Copies the broker returned (their queue does not exist), by `copyKey`, waiting for their confirm:
   * RabbitMQ returns an unroutable `mandatory` message, then confirms it anyway.
   */
  private readonly returnedCopies = new Map<string, number>();
  private stopping = false;
  /** Whether a channel set up may subscribe at once (`subscribe()` was called). */
  private subscribing = false;
  /** The subscription of the channel set up before `subscribe()`, waiting for it. */
  private pendingSubscription: { channel: ConfirmChannel; subscribe: () => Promise<void> } | undefined;
  /** The declaration of the handler's queues under way (`declareTopologyAgain()`): copies returned meanwhile share it. */
  private declaring: object | undefined;
  /** Asked for while a declaration ran (the queue deleted again meanwhile, perhaps after it declared it): once more when it ends. */
  private declareAgain = false;

  constructor(
    readonly handler: DiscoveredHandler,
    private readonly connection: RabbitMqConnection,
    private readonly publishing: RabbitMqConnection,
    private readonly callbacks: ConsumerCallbacks,
    private readonly options: ResolvedIntegrationEventsOptions,
  ) {}

  /** True while the consumer is subscribed to its queue. */
  get isAttached(): boolean {
    return this.consumer !== undefined && this.consumer.channel === this.channel?.current;
  }

  /**
   * Registers the consumer's channel, which declares its topology and subscribes when the consuming
   * connection opens, and its copies' channel on the publishing connection (a publish during a broker
   * alarm blocks that connection, never the deliveries and acks of this one).
   */
  start(): void {
    if (this.stopping) return;
    const { handler } = this;
    this.copies = this.publishing.manage({
      name: `copies:${handler.queue}`,
      setup: (channel) => {
        channel.on('return', (message: Message) => this.onReturnedCopy(message));
        // Its unconfirmed copies fail when it closes (amqplib calls back every pending confirm).
        channel.once('close', () => this.returnedCopies.clear());
        return Promise.resolve();
      },
    });
    this.channel = this.connection.manage({
      name: `consumer:${handler.queue}`,
      setup: async (channel) => {
        await channel.prefetch(handler.prefetch);
        await declareHandlerTopology(channel, handler, this.options.rabbitmq!.exchange, this.options.consumer.queueType);
        const acks = new AckCoalescer(
          channel,
          (error, messages) =>
            this.logger.warn(
              `Could not acknowledge ${messages.length} message(s) on ${handler.queue} (${messages.map((m) => printableId(m.properties.messageId)).join(', ')}); ` +
                `the broker delivers them again: ${error.message}`,
            ),
          this.options.consumer.ackDelayMs,
          acksHeldAtMost(handler.prefetch, handler.concurrency),
        );
        const subscription: Subscription = { channel, tag: '', acks, waiting: [], retired: false, closed: false, cancelled: false };
        // The broker returns this channel's unacknowledged deliveries to the queue when it closes: the
        // ones waiting for a slot must not start after that (they would run twice), nor may the calls
        // running then place copies of theirs (see `settle`).
        channel.once('close', () => {
          subscription.closed = true;
          this.retire(subscription);
        });
        const subscribe = async (): Promise<void> => {
          const { consumerTag } = await channel.consume(handler.queue, (message) => this.onDelivery(subscription, message), {
            noAck: false,
          });
          subscription.tag = consumerTag;
          if (this.stopping) {
            // stop() began while the broker was answering, and found no consumer to cancel: its
            // deliveries would be given back to it, again and again, until the channel closes.
            this.lateSubscription = subscription;
            await cancelQuietly(channel, consumerTag);
            this.giveBack(subscription, subscription.waiting.splice(0));
            // stop() may have flushed already (nothing was running): the acks of calls that ended go now,
            // while the channel is open; stop() flushes those of calls still running.
            subscription.acks.flush();
            return;
          }
          this.consumer = subscription;
        };
        // A channel reopened while stop() drains (the connection lost and recovered meanwhile) must not
        // consume again: its deliveries would wait unrun, kept from the other instances, until the close.
        if (this.stopping) return;
        if (this.subscribing) await subscribe();
        else this.pendingSubscription = { channel, subscribe };
      },
    });
  }

  /**
   * Lets the consumer take deliveries. Until then (boot: the transport calls this once every connection
   * it needs is up) its channel is set up and its queues declared, but it does not subscribe: a handler
   * must not run in an application whose boot then fails (a queue that cannot be declared, the
   * publishing connection refused), where its ack would die with the connection and its work run again.
   */
  async subscribe(): Promise<void> {
    this.subscribing = true;
    const pending = this.pendingSubscription;
    this.pendingSubscription = undefined;
    if (!pending || this.stopping || this.channel?.current !== pending.channel) return;
    try {
      await pending.subscribe();
    } catch (error) {
      // Its channel closed meanwhile: the fresh one subscribes as it is set up.
      this.logger.warn(`${this.handler.queue}: subscribing failed, it subscribes once its channel is opened afresh: ${(error as Error).message}`);
    }
  }

  /**
   * Stops taking deliveries and gives back at once those in hand that never started (waiting for a free
   * slot), fires the abort signal of running handlers, waits for them up to `timeoutMs`, then closes the
   * channel. Messages not acknowledged by then go back to the queue.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    const consumer = this.consumer;
    this.consumer = undefined;
    // Bounded: a connection that is half-dead (no heartbeats) or blocked by the broker never answers,
    // and the handlers' signals must fire regardless. Deliveries arriving after this are left alone.
    if (consumer) await cancelQuietly(consumer.channel, consumer.tag);
    // Deliveries in hand that never started go back to the queue now, for another instance (a rolling
    // deploy's new one), instead of when the channel closes once the running calls are done.
    if (consumer) this.giveBack(consumer, consumer.waiting.splice(0));
    this.abort.abort(new Error('The application is shutting down'));
    if (this.inFlight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const result = await Promise.race([Promise.allSettled([...this.inFlight]), timedOut]);
      clearTimeout(timer);
      if (result === 'timeout') {
        this.logger.warn(
          `${this.inFlight.size} handler call(s) on ${this.handler.queue} still running after ${timeoutMs} ms; ` +
            'their messages are returned to the queue and will be delivered again',
        );
      }
    }
    // Acks of the last handlers wait for consumer.ackDelayMs (or the end of this turn): send them before the channel goes.
    consumer?.acks.flush();
    if (this.lateSubscription !== consumer) this.lateSubscription?.acks.flush();
    await Promise.all([
      this.channel ? this.connection.release(this.channel) : undefined,
      this.copies ? this.publishing.release(this.copies) : undefined,
    ]);
  }

  private onDelivery(subscription: Subscription, message: ConsumeMessage | null): void {
    if (message === null) {
      // The broker cancelled the consumer (the queue was deleted): reopen, which re-declares the queue.
      this.logger.warn(`Queue ${this.handler.queue} cancelled our consumer (deleted?); re-declaring it`);
      // The deliveries in hand went with the queue (deleted, as a rule): a call of theirs that fails
      // still places its copy, which keeps the message (and, should the queue have kept it, makes two).
      subscription.cancelled = true;
      // The channel is still open: the acks waiting for their window go now, before it closes.
      subscription.acks.flush();
      // Declared again at once, not only by the fresh channel (a second or more away): a retry copy waiting
      // meanwhile, or placed by a call that fails now, would otherwise be dead-lettered to a queue that is
      // not there, and dropped by the broker.
      this.declareTopologyAgain();
      this.recycleChannel(subscription);
      return;
    }
    subscription.acks.track(message);
    // Once the channel is closing, deliveries already on the wire are left unacknowledged: the close
    // returns them to the queue. After cancel at shutdown they go back at once, as the waiting ones do.
    if (subscription.retired) return;
    if (this.stopping) return this.giveBack(subscription, [message]);
    if (this.inFlight.size < this.handler.concurrency) this.run(subscription, message);
    else subscription.waiting.push(message);
  }

  /** Calls the handler for `message`; when it is settled, starts the next delivery waiting on the current channel. */
  private run(subscription: Subscription, message: ConsumeMessage): void {
    const work = this.process(subscription, message)
      .catch(async (error: unknown) => {
        // Shutting down (a delivery still waiting to start, say): left unacknowledged, the channel's close
        // returns it to the queue; nothing failed.
        if (this.stopping) {
          this.logger.log(`Message ${printableId(message.properties.messageId)} on ${this.handler.queue} goes back to the queue at shutdown: ${(error as Error).message}`);
          return;
        }
        // A fault of ours, not the handler's (those are retried or dead-lettered): give the message back
        // to its queue after a pause rather than hold it unsettled for the channel's life.
        this.logger.error(
          `Processing message ${printableId(message.properties.messageId)} on ${this.handler.queue} failed; returning it to the queue: ${(error as Error).message}`,
        );
        await this.returnToQueue(subscription.acks, message);
      })
      .finally(() => {
        this.inFlight.delete(work);
        // Deliveries of a channel that closed meanwhile are not started: the broker delivers them again.
        const current = this.consumer;
        if (this.stopping || !current) return;
        while (this.inFlight.size < this.handler.concurrency && current.waiting.length > 0) this.run(current, current.waiting.shift()!);
      });
    this.inFlight.add(work);
  }

  private async process(subscription: Subscription, message: ConsumeMessage): Promise<void> {
    const headers = ownHeaders(message.properties.headers);
    const disposition = await this.callbacks.dispatch(
      this.handler,
      {
        body: message.content,
        messageId: message.properties.messageId,
        routingKey: message.fields.routingKey,
        headers,
        redelivered: message.fields.redelivered,
        routed: message.fields.exchange === this.options.rabbitmq!.exchange && message.fields.routingKey === this.handler.event.name,
      },
      this.abort.signal,
    );
    await this.settle(subscription, message, headers, disposition);
  }

  private async settle(
    subscription: Subscription,
    message: ConsumeMessage,
    headers: Record<string, unknown>,
    disposition: Disposition,
  ): Promise<void> {
    const { acks } = subscription;
    if (disposition.action === 'ack') {
      acks.ack(message);
      return;
    }
    if (this.stopping) {
      // A handler that failed while the application shuts down (its signal fired, a client it uses was
      // closed) has not really failed: leave the message unacknowledged; closing the channel returns it
      // to the queue, attempt count untouched.
      return;
    }
    if (subscription.closed && !subscription.cancelled) {
      // The channel closed while the handler ran (the connection was lost, the broker closed it): the
      // message is back in its queue and comes again with the same attempt. A retry or dead-letter copy
      // now would be a second copy of it, certain: that attempt is not counted.
      this.logger.warn(
        `Message ${printableId(message.properties.messageId)} on ${this.handler.queue} failed after its channel closed ` +
          `(${printable(`${disposition.failure.name}: ${disposition.failure.message}`)}); the broker delivers it again, and this attempt is not counted`,
      );
      return;
    }
    if (disposition.action === 'retry') {
      const tier = this.handler.retryPolicy.tierFor(disposition.delayMs);
      const copied = await this.copy(message, waitQueueName(this.handler.queue, tier), retryCopyHeaders(headers, disposition), {
        expiration: String(disposition.delayMs),
      });
      if (!copied) return this.returnToQueue(acks, message);
      acks.ack(message);
      this.callbacks.placed(this.handler, disposition);
      return;
    }
    const copied = await this.copy(message, this.handler.deadLetterQueue, deadLetterHeaders(headers, disposition, this.handler), {});
    if (!copied) {
      await this.returnToQueue(acks, message);
      return;
    }
    acks.ack(message);
    this.callbacks.placed(this.handler, disposition);
    this.logger.warn(
      `Dead-lettered message ${printableId(disposition.messageId)} from ${this.handler.queue} to ${this.handler.deadLetterQueue} ` +
        `(${disposition.reason}, ${disposition.attempts} attempt(s)): ${printable(`${disposition.failure.name}: ${disposition.failure.message}`)}`,
    );
    await callDeadLetterHook(
      this.options.consumer.onDeadLetter,
      // The headers of the copy in the dead-letter queue (smaller ones if the full set did not fit).
      toDeadLetter(disposition, copied, message.content, this.handler),
      this.handler.timeoutMs,
      this.logger,
    );
  }

  /**
   * Publishes a copy of `message` straight to `queue` (default exchange) and waits for its confirm.
   * `mandatory`: a queue deleted while the service runs (by an operator, a policy) would otherwise take
   * the copy silently, confirmed. A returned copy counts as not placed, and this handler's queues are
   * declared again (on a channel of their own); the original then comes back from its queue.
   * @returns the headers of the copy now in `queue` (those given, or smaller ones), or `undefined` when
   *   it could not be placed
   */
  private copy(
    message: ConsumeMessage,
    queue: string,
    headers: Record<string, unknown>,
    extra: Pick<Options.Publish, 'expiration'>,
  ): Promise<Record<string, unknown> | undefined> {
    const { properties } = message;
    const channel = this.copies?.current;
    if (!channel || this.publishing.isBlocked) {
      // Blocked (a broker alarm): the copy would wait for the alarm's end in this handler's slot; the
      // original goes back to its queue instead, and the slot serves messages that succeed meanwhile.
      const why = channel
        ? 'the broker blocks publishing (a memory or disk alarm)'
        : 'no channel for copies is open (the publishing connection is down, or the channel is being opened afresh)';
      this.logger.error(`Copy of message ${printableId(properties.messageId)} to ${queue} could not be sent: ${why}`);
      return Promise.resolve(undefined);
    }
    return new Promise((settle) => {
      // A confirm that never comes (a half-dead connection, heartbeats off or not yet due) must not hold
      // the handler's slot: after relay.confirmTimeoutMs the copy counts as not placed (the original goes
      // back to its queue; should the copy arrive after all, the message is handled twice, never lost)
      // and the channel, unhealthy, is opened afresh.
      const timeoutMs = this.options.relay.confirmTimeoutMs;
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      const giveUp = (): void => {
        if (done) return;
        if (this.stopping) {
          // Shutting down: the channel is closing anyway, and the message returns to its queue with it.
          resolve(undefined);
          return;
        }
        if (this.publishing.isBlocked) {
          // A broker alarm holds every confirm until it ends, then the copy is placed: giving the message
          // back now would make it certain to be handled twice. Wait on, as for the alarm's end.
          timer = setTimeout(giveUp, timeoutMs).unref();
          return;
        }
        this.logger.error(
          `Copy of message ${printableId(properties.messageId)} to ${queue} was not confirmed within ${timeoutMs} ms (relay.confirmTimeoutMs); ` +
            `the message goes back to its queue, and the copies' channel is opened afresh`,
        );
        if (this.copies?.current === channel) this.copies.recycle();
        resolve(undefined);
      };
      timer = setTimeout(giveUp, timeoutMs).unref();
      const resolve = (sentHeaders: Record<string, unknown> | undefined): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        settle(sentHeaders);
      };
      // A copy amqplib cannot encode (headers over its 64 KiB table, values or properties it decoded but
      // cannot encode again) is tried again in other forms; giving it back to its queue instead would
      // bring it back to the handler, failing the same way, for ever. Every other form leaves out the
      // properties amqplib cannot encode.
      const onPlaced = (sentHeaders: Record<string, unknown> | undefined) => resolve(sentHeaders);
      let sent = this.trySendCopy(channel, message, queue, headers, extra, onPlaced, false);
      if (sent !== 'unencodable') {
        if (sent === 'failed') resolve(undefined);
        return;
      }
      const forms = [headers, ...smallerCopyHeaders(headers)];
      // The first form only differs by the properties left out: pointless when they all encode.
      const propertiesEncode = withEncodableProperties(copyProperties(properties, headers)).dropped.length === 0;
      for (const [index, form] of forms.entries()) {
        if (index === 0 && propertiesEncode) continue;
        sent = this.trySendCopy(channel, message, queue, form, extra, onPlaced, true);
        if (sent === 'unencodable') continue;
        if (sent === 'sent') {
          this.logger.warn(
            `Copy of message ${printableId(properties.messageId)} to ${queue} could not be encoded whole: sent ` +
              [
                "with the properties amqplib can encode",
                "without the failure's stack",
                "with only the library's headers",
                "with only the library's headers amqplib can encode",
              ][index] +
              (typeof form[MessageHeaders.DroppedHeaders] === 'string' ? ` (left out: ${printable(form[MessageHeaders.DroppedHeaders] as string)})` : ''),
          );
        } else resolve(undefined);
        return;
      }
      resolve(undefined);
    });
  }

  /**
   * Sends one copy: `sent`, and `onPlaced` then gets the headers sent when the copy is in `queue`, else
   * `undefined`. amqplib refuses a copy on the spot, before sending anything, when it cannot encode it
   * (`unencodable`: a RangeError or a TypeError from its codec) or when the channel is gone (`failed`,
   * an IllegalOperationError; logged).
   * @param encodablePropertiesOnly leave out the short-string properties amqplib cannot encode again, and
   *   name them in `ie-dropped-headers`
   */
  private trySendCopy(
    channel: ConfirmChannel,
    message: ConsumeMessage,
    queue: string,
    headers: Record<string, unknown>,
    extra: Pick<Options.Publish, 'expiration'>,
    onPlaced: (sentHeaders: Record<string, unknown> | undefined) => void,
    encodablePropertiesOnly: boolean,
  ): 'sent' | 'unencodable' | 'failed' {
    const { properties } = message;
    let options = copyProperties(properties, headers);
    if (encodablePropertiesOnly) {
      const encodable = withEncodableProperties(options);
      options = encodable.options;
      if (encodable.dropped.length > 0) {
        headers = { ...headers, [MessageHeaders.DroppedHeaders]: droppedHeadersWithProperties(headers[MessageHeaders.DroppedHeaders], encodable.dropped) };
      }
    }
    const sentHeaders = headers;
    // The broker returns the copy under the id it was sent with (none, when it was left out).
    const key = copyKey(queue, options.messageId);
    try {
      channel.sendToQueue(queue, message.content, { ...options, headers: this.copyHeaders.fill(sentHeaders), ...extra, mandatory: true }, (error) => {
        const returned = this.takeReturned(key);
        if (error) this.logger.error(`Copy of message ${printableId(properties.messageId)} to ${queue} was not confirmed: ${String(error)}`);
        else if (returned) {
          this.logger.error(
            `Copy of message ${printableId(properties.messageId)} to ${queue} was returned: the queue does not exist (deleted?); ` +
              `declaring ${this.handler.queue}'s queues again, the message comes back from its queue`,
          );
          this.declareTopologyAgain();
        }
        onPlaced(!error && !returned ? sentHeaders : undefined);
      });
      return 'sent';
    } catch (error) {
      // amqplib's reason may quote a header's value (an unknown type tag a publisher sent).
      this.logger.error(`Copy of message ${printableId(properties.messageId)} to ${queue} failed: ${printable(String((error as Error)?.message))}`);
      return isEncodingError(error) ? 'unencodable' : 'failed';
    }
  }

  /**
   * Declares the handler's queues again after a copy came back from one deleted while the service runs,
   * on a channel of its own: the consumer's channel goes on, so the acks of the calls running on it (and
   * of those whose copies were confirmed with the returned one) are not lost to its close, which would
   * bring their messages back to run again. Copies returned together share one declaration; whatever
   * asks while one runs (the queue may have been deleted again after it was declared) gets one more. A failed
   * one (a queue re-created by hand with other arguments) is logged; the message it was for comes back
   * from its queue and tries again.
   */
  private declareTopologyAgain(): void {
    if (this.stopping) return;
    if (this.declaring) {
      this.declareAgain = true;
      return;
    }
    const attempt = {};
    this.declaring = attempt;
    // A connection that never answers (heartbeats off) must not keep the copies returned later from
    // declaring again.
    const bound = setTimeout(() => {
      if (this.declaring === attempt) this.declaring = undefined;
    }, this.options.relay.confirmTimeoutMs).unref();
    void (async () => {
      let channel: ConfirmChannel | undefined;
      try {
        channel = await this.connection.openChannel();
        await declareHandlerTopology(channel, this.handler, this.options.rabbitmq!.exchange, this.options.consumer.queueType);
      } catch (error) {
        // At shutdown the connection closes under it: nothing to report.
        if (!this.stopping) this.logger.error(`Could not declare ${this.handler.queue}'s queues again: ${(error as Error).message}`);
      } finally {
        clearTimeout(bound);
        if (this.declaring === attempt) this.declaring = undefined;
        if (channel) await closeQuietly(channel);
        if (this.declareAgain && !this.declaring) {
          this.declareAgain = false;
          this.declareTopologyAgain();
        }
      }
    })();
  }

  /**
   * Closes the consumer's channel for a fresh one (which declares the handler's queues again). Its
   * deliveries waiting for a slot are dropped at once, not when the broker has answered the close (a
   * round trip, or heartbeats on a half-dead connection): the close returns them to the queue, and
   * started meanwhile they would run twice. Calls already running finish; their acks fail, logged.
   */
  private recycleChannel(subscription = this.consumer): void {
    // At shutdown the channel goes anyway, once the calls in flight are done: closing it now would fail their acks.
    if (this.stopping) return;
    if (subscription) this.retire(subscription);
    this.channel?.recycle();
  }

  /** Returns never-started deliveries to the queue (a channel already gone returns them itself). */
  private giveBack(subscription: Subscription, messages: readonly ConsumeMessage[]): void {
    for (const message of messages) {
      try {
        subscription.acks.nack(message, true);
      } catch {
        // The channel is closed: the broker has returned the message to the queue already.
      }
    }
  }

  private retire(subscription: Subscription): void {
    subscription.retired = true;
    subscription.waiting.length = 0;
    if (this.consumer === subscription) this.consumer = undefined;
  }

  private onReturnedCopy(message: Message): void {
    const key = copyKey(message.fields.routingKey, message.properties.messageId);
    this.returnedCopies.set(key, (this.returnedCopies.get(key) ?? 0) + 1);
  }

  private takeReturned(key: string): boolean {
    const count = this.returnedCopies.get(key);
    if (count === undefined) return false;
    if (count > 1) this.returnedCopies.set(key, count - 1);
    else this.returnedCopies.delete(key);
    return true;
  }

  /** The copy could not be placed: after a pause, give the message back to its queue as it was. */
  private async returnToQueue(acks: AckCoalescer, message: ConsumeMessage): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, RETURN_TO_QUEUE_PAUSE_MS));
    try {
      acks.nack(message, true);
    } catch {
      // The channel is gone: the broker returns the message to the queue by itself.
    }
  }

}

/**
 * The message's headers as a plain object. amqplib fills a header table by assignment, so a header
 * named `__proto__` (a publisher's) becomes the object's prototype (or takes it away): lookups would then
 * find what the prototype holds, and a handler reading `context.headers` an object without the usual
 * methods. Such a table is copied, its own headers only.
 */
function ownHeaders(headers: unknown): Record<string, unknown> {
  if (headers === undefined || headers === null) return {};
  return plainTable(headers as Record<string, unknown>, 0);
}

/**
 * `table`, or, when it or a table in it (in an array too, such as `x-death`; up to 32 levels down) had
 * its prototype replaced, a copy of their own entries, made only along the path that changed.
 */
function plainTable(table: Record<string, unknown>, depth: number): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined = Object.getPrototypeOf(table) === Object.prototype ? undefined : { ...table };
  if (depth >= 32) return copy ?? table;
  for (const [name, value] of Object.entries(table)) {
    const plain = plainValue(value, depth + 1);
    if (plain !== value) (copy ??= { ...table })[name] = plain;
  }
  return copy ?? table;
}

function plainValue(value: unknown, depth: number): unknown {
  // Bytes by their internal slot: a table whose `__proto__` field was bytes passes `Buffer.isBuffer`.
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return value;
  if (!Array.isArray(value)) return plainTable(value as Record<string, unknown>, depth);
  if (depth >= 32) return value;
  let copy: unknown[] | undefined;
  value.forEach((item: unknown, index) => {
    const plain = plainValue(item, depth + 1);
    if (plain !== item) (copy ??= [...value])[index] = plain;
  });
  return copy ?? value;
}

/** A copy as the broker names it when it returns one: the queue it was sent to, and the message id. */
function copyKey(queue: string, messageId: unknown): string {
  return `${queue}\u0000${String(messageId)}`;
}
