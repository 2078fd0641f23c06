import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { getIntegrationEventMetadata, type IntegrationEventClass } from '../decorators/integration-event-metadata';
import { buildMessageHeaders, validateCorrelationId } from '../envelope/message-headers.factory';
import { newMessageId } from '../envelope/message-id';
import { MessageHeaders } from '../envelope/message-headers';
import type { MessageHeadersRecord } from '../envelope/outgoing-message';
import { serializeEvent } from '../publisher/serialize-event';
import { findInvalidDate } from '../consumer/message-decoder';
import type { OutboxDatabase } from '../outbox/outbox-database';
import type { OutboxRelay } from '../relay/outbox.relay';
import type { IntegrationEventConsumers } from '../consumer/integration-event-consumers';
import type { IntegrationEventsConfig } from '../options/integration-events.config';
import type { InProcessBroker } from '../transport/in-process/in-process-broker';
import { InvalidPublishOptionsError } from '../errors/invalid-publish-options.error';
import { DrainTimeoutError } from './drain-timeout.error';
import { TestKitRefusalError } from './test-kit-refusal.error';
import { OpenTransactions } from './open-transactions';
import type { PublishedMessage } from './published-message';

/**
 * The ids of the messages the kits on a broker delivered (`deliver()`): in every kit's `published`, in
 * none's `publishedEvents()`, whichever kit of the test delivered them.
 */
const deliveredOn = new WeakMap<InProcessBroker, Set<string>>();

function deliveredIds(broker: InProcessBroker): Set<string> {
  let ids = deliveredOn.get(broker);
  if (!ids) deliveredOn.set(broker, (ids = new Set()));
  return ids;
}

/**
 * What a test needs around a service that uses integration events, on the in-process broker: what was
 * published (with headers), a way to deliver an event as if another service had published it, and
 * `drain()` to run the relay and the consumers until nothing is left — so a test never sleeps.
 */
export class IntegrationEventsTestKit {
  private recorded: PublishedMessage[] = [];
  private disposed = false;
  private readonly untap: () => void;
  private transactions: OpenTransactions | undefined;

  constructor(
    /** The broker the service runs on; share it with other services of the test to let them talk. */
    readonly broker: InProcessBroker,
    private readonly exchange: string,
    private readonly serviceName: string,
    /** Resolved on use: the kit is built before the module's own providers are. */
    private readonly services: () => {
      relay: OutboxRelay;
      database: OutboxDatabase;
      consumers: IntegrationEventConsumers;
      config: IntegrationEventsConfig;
    },
  ) {
    this.untap = broker.tap((exchangeName, message, routed) => {
      if (exchangeName !== this.exchange) return;
      let payload: unknown;
      try {
        payload = JSON.parse(message.content.toString('utf8'));
      } catch {
        payload = message.content.toString('utf8');
      }
      const version = message.headers[MessageHeaders.EventVersion];
      this.recorded.push({
        messageId: message.messageId,
        eventName: message.routingKey,
        eventVersion: typeof version === 'number' ? version : undefined,
        headers: message.headers,
        payload,
        routed,
      });
    });
  }

  /**
   * Every message published on the exchange so far, in order (this service's and the others'): a copy,
   * taken now (one kept from before an action does not grow with it).
   */
  get published(): readonly PublishedMessage[] {
    return [...this.recorded];
  }

  /**
   * The published events of one class (its name and version), rebuilt as instances as a handler would
   * receive them. The events the test delivered (`deliver()`, through this kit or another on its broker)
   * are not among them: a handler that should publish the event it got must be seen doing so.
   * @throws TestKitRefusalError when one fails the class's class-validator rules (synchronous ones), or a date field of the
   *   class gets something that is not a date: its consumers would refuse it as poison, so a test
   *   asserting on it must not pass
   */
  publishedEvents<T extends object>(eventClass: IntegrationEventClass<T>): T[] {
    const { name, version } = getIntegrationEventMetadata(eventClass);
    const delivered = deliveredIds(this.broker);
    return this.recorded
      .filter((message) => message.eventName === name && message.eventVersion === version && !(message.messageId !== undefined && delivered.has(message.messageId)))
      .map((message) =>
        this.rebuild(eventClass as unknown as new () => T, message.payload as object, `Published ${name} v${version} ${String(message.messageId)}`, 'its consumers'),
      );
  }

  /**
   * The payload as a consumer rebuilds it for a handler of `eventClass`.
   * @throws TestKitRefusalError where that consumer would dead-letter it as poison without calling the
   *   handler: a date field that is not a date, or the class's (synchronous) class-validator rules failed
   */
  private rebuild<T extends object>(eventClass: new () => T, payload: object, what: string, consumers: string): T {
    const event = plainToInstance(eventClass, payload);
    const invalidDate = findInvalidDate(event, '$', this.services().config.options.consumer.maxDepth);
    if (invalidDate) {
      throw new TestKitRefusalError(`${what} has an invalid date at ${invalidDate} once rebuilt as ${eventClass.name}: ${consumers} would dead-letter it as poison`);
    }
    const violations = validateSync(event, { forbidUnknownValues: false });
    if (violations.length > 0) {
      const details = violations.map((v) => `${v.property}: ${Object.values(v.constraints ?? { nested: 'invalid nested value' }).join(', ')}`);
      throw new TestKitRefusalError(`${what} fails the validation rules of ${eventClass.name} (${details.join('; ')}): ${consumers} would dead-letter it as poison`);
    }
    return event;
  }

  /** Forgets what was recorded. */
  clear(): void {
    this.recorded = [];
  }

  /**
   * Delivers an event to this service's handlers as if another service had published it (straight to
   * the broker, with the contract headers). Call `drain()` to wait for the handlers. `headers` are
   * checked as `publish()` checks them, except that `x-` headers are allowed: another publisher may send
   * `x-tenant-id`, and retries and dead letters keep it. A `messageId` the consumer would refuse, or a
   * `correlationId` `publish()` would refuse (not 1-200 printable ASCII characters without spaces), throws
   * `InvalidPublishOptionsError`.
   * @returns the message id
   * @throws TestKitRefusalError when no handler of this application consumes the event (none among its providers, the
   *   consumers off, or not initialised), or not its version, whatever other applications on a shared
   *   broker consume; or when its handlers would dead-letter it as poison without running: it fails
   *   their event class's (synchronous) class-validator rules, has a date field that is not a date, or
   *   is over `consumer.maxBodyBytes` (to test that dead-lettering, publish the raw message on `broker`)
   */
  async deliver(
    event: object,
    options: { messageId?: string; headers?: MessageHeadersRecord; correlationId?: string; sourceService?: string } = {},
  ): Promise<string> {
    const { name, version } = getIntegrationEventMetadata(event.constructor);
    const { consumers, config } = this.services();
    // Dropped, or handled by another application on a shared broker, a negative test ("nothing is
    // charged") would pass without testing anything. Checked before anything is published or recorded.
    if (!consumers.running || !consumers.handlers.some((handler) => handler.eventName === name)) {
      throw new TestKitRefusalError(
        `No handler of ${name} consumes in this application. Is it among the providers, is consumer.enabled on, was the ` +
          'application initialised (init()) before deliver(), and not closed?',
      );
    }
    // A version no handler takes is a dead letter (poison) for each of them: as silent for such a test.
    if (!consumers.handlers.some((handler) => handler.eventName === name && handler.eventVersion === version)) {
      const known = [...new Set(consumers.handlers.filter((handler) => handler.eventName === name).map((handler) => handler.eventVersion))];
      throw new TestKitRefusalError(
        `No handler of version ${version} of ${name} consumes in this application (its handlers take version ${known.join(', ')}); ` +
          'each would dead-letter it as poison.',
      );
    }
    // Checked as the consumer checks them: an id it refuses would make the delivery a dead letter, and a
    // test asserting that nothing happened would pass without testing anything.
    const messageId = options.messageId === undefined ? newMessageId() : validateCorrelationId(options.messageId, 'messageId');
    const correlationId = options.correlationId === undefined ? messageId : validateCorrelationId(options.correlationId);
    const given = options.headers;
    // Anything but an object goes to the usual check as it is, to be refused there.
    const entries = typeof given === 'object' && given !== null && !Array.isArray(given) ? Object.entries(given) : undefined;
    const foreign = (entries ?? []).filter(([header]) => header.toLowerCase().startsWith('x-'));
    for (const [header, value] of foreign) {
      if (!['string', 'number', 'boolean'].includes(typeof value)) {
        throw new InvalidPublishOptionsError(`headers.${header}`, 'use a string, a number or a boolean.');
      }
    }
    const headers = {
      ...Object.fromEntries(foreign),
      ...buildMessageHeaders(
        {
          eventName: name,
          eventVersion: version,
          occurredAt: new Date(),
          sourceService: options.sourceService ?? 'test',
          correlationId,
        },
        entries ? Object.fromEntries(entries.filter(([header]) => !header.toLowerCase().startsWith('x-'))) : given,
      ),
    };
    const content = Buffer.from(serializeEvent(name, event, config.options.consumer.maxDepth));
    // A message its handlers refuse as poison never reaches them either: a test asserting that nothing
    // happened would pass without testing anything. (To test the dead-lettering itself, publish the raw
    // message on `kit.broker`.)
    const { maxBodyBytes } = config.options.consumer;
    if (content.length > maxBodyBytes) {
      throw new TestKitRefusalError(`The ${name} v${version} delivered is ${content.length} bytes, over consumer.maxBodyBytes (${maxBodyBytes}): its handlers would dead-letter it as poison`);
    }
    for (const eventClass of consumers.eventClassesOf(name, version)) {
      this.rebuild(eventClass as new () => object, JSON.parse(content.toString('utf8')) as object, `The ${name} v${version} delivered`, 'its handlers');
    }
    deliveredIds(this.broker).add(messageId);
    const routed = this.broker.publish(this.exchange, {
      content,
      messageId,
      routingKey: name,
      headers,
      properties: {},
      redelivered: false,
    });
    if (!routed) throw new TestKitRefusalError(`No queue is bound for ${name}: the application's consumers have not declared theirs yet`);
    return messageId;
  }

  /**
   * Runs the relay and the consumers until nothing is left: no due row in this service's outbox, no
   * message ready or in flight in a queue that has a consumer, no retry waiting in the broker, no
   * transaction open on the outbox's DataSource (a command a saga sent after a commit) — twice in a
   * row, so work started by the last step is seen. Failing handlers are retried (with the testing
   * module's short delays) until they succeed or are dead-lettered. Rows published with a delay that is
   * not yet due are not waited for.
   * @param alongside the kits of other services on the same broker (`forRoot({ broker })`): their outboxes
   *   and transactions count too, in the same rounds, so that a flow going back and forth between the
   *   services is followed to its end (each kit drained on its own may find itself idle while a reply
   *   waits in another service's outbox)
   * @throws DrainTimeoutError after `timeoutMs` (half a second later at most, while the outbox is being
   *   counted), saying what was left
   * @throws RangeError for a `timeoutMs` that is not a positive number up to 2147483647
   * @throws TypeError for an `alongside` that is not a list of kits on this kit's broker
   */
  async drain({ timeoutMs = 10_000, alongside = [] }: { timeoutMs?: number; alongside?: readonly IntegrationEventsTestKit[] } = {}): Promise<void> {
    // NaN would make the deadline never pass: a drain that never gives up. Past 2^31 - 1 Node fires its
    // timers after 1 ms: each count of the outbox would be given up on at once, and the drain never end.
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !(timeoutMs <= 2_147_483_647)) {
      throw new RangeError(`drain({ timeoutMs }) takes a positive number of milliseconds up to 2147483647, not ${String(timeoutMs)}`);
    }
    if (!Array.isArray(alongside) || !alongside.every((kit) => kit instanceof IntegrationEventsTestKit && kit.broker === this.broker)) {
      throw new TypeError('drain({ alongside }) takes a list of the IntegrationEventsTestKits of the other services on this kit\'s broker');
    }
    // Its outbox cannot be read any more, nor would its relay publish what is left there.
    const closed = [this, ...alongside].filter((kit) => kit.disposed);
    if (closed.length > 0) {
      throw new TestKitRefusalError(`drain() was given the kit of a closed application (${closed.map((kit) => kit.serviceName).join(', ')}): drain before closing it`);
    }
    const kits = [this, ...alongside];
    const deadline = Date.now() + timeoutMs;
    let quietRounds = 0;
    for (;;) {
      for (const kit of kits) kit.services().relay.wake();
      let left: string | undefined;
      for (const kit of kits) {
        left = await kit.workLeft(deadline);
        if (left !== undefined) break;
      }
      if (left === undefined) {
        // Idle twice in a row is done, even past the deadline: nothing was left.
        if (++quietRounds >= 2) return;
      } else {
        quietRounds = 0;
        if (Date.now() >= deadline) throw new DrainTimeoutError(timeoutMs, left);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /**
   * @internal Follows the transactions of the outbox's DataSource from now on, for `drain()` (the testing
   * module calls it as the application starts, once the DataSource is known).
   */
  watchTransactions(): void {
    this.transactions ??= new OpenTransactions(this.services().database.dataSource);
  }

  /** Stops recording (the testing module does it on shutdown). */
  dispose(): void {
    this.disposed = true;
    this.untap();
    this.transactions?.detach();
  }

  /** What is still going on, or undefined when idle; waits past `deadline` by half a second at most. */
  private async workLeft(deadline: number): Promise<string | undefined> {
    // The broker first: a handler in flight keeps its transaction open, and on SQLite the outbox query
    // waits for open transactions to end.
    if (this.broker.busy) {
      return this.broker.delayed > 0 ? `${this.broker.delayed} retry(ies) waiting in the broker` : 'messages in flight in the broker';
    }
    // Then work begun outside a delivery, which shows in the outbox only at its commit: a command a saga
    // sent after a handler's commit, a request, a handler call given up on at its timeoutMs.
    const open = this.transactions?.count ?? 0;
    if (open > 0) return `${open} transaction(s) open on the DataSource`;
    let timer: NodeJS.Timeout | undefined;
    const outOfTime = new Promise<'out-of-time'>((resolve) => {
      timer = setTimeout(() => resolve('out-of-time'), Math.max(500, deadline - Date.now()));
    });
    try {
      const backlog = await Promise.race([this.services().database.store.backlog(), outOfTime]);
      if (backlog === 'out-of-time') return `the count of ${this.serviceName}'s due outbox rows, which waited for an open transaction`;
      return backlog.pending > 0 ? `${backlog.pending} due outbox row(s) of ${this.serviceName}` : undefined;
    } finally {
      clearTimeout(timer);
    }
  }
}
