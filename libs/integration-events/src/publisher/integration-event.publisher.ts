import { Injectable } from '@nestjs/common';
import { getIntegrationEventMetadata } from '../decorators/integration-event-metadata';
import { buildMessageHeaders, validateApplicationHeaders, validateCorrelationId } from '../envelope/message-headers.factory';
import { newMessageId } from '../envelope/message-id';
import { InvalidPublishOptionsError } from '../errors/invalid-publish-options.error';
import { IntegrationEventSerializationError } from '../errors/integration-event-serialization.error';
import { NoActiveTransactionError } from '../errors/no-active-transaction.error';
import { EntityManagerResolver } from '../outbox/entity-manager.resolver';
import { OutboxCommitSubscriber } from '../outbox/outbox-commit.subscriber';
import { OutboxDatabase } from '../outbox/outbox-database';
import type { ClaimedOutboxRecord, NewOutboxRecord } from '../outbox/outbox-record';
import { CorrelationContext } from '../correlation/correlation.context';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { RelayHandoff } from '../relay/relay-handoff';
import { WakeSignal } from '../relay/wake-signal';
import { activeTraceHeaders } from '../telemetry/trace-context';
import type { PublishOptions } from './publish-options.interface';
import { serializeEvent } from './serialize-event';

/** The last instant whose ISO 8601 form has a four-digit year. */
const LATEST_OCCURRED_AT = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** Every option `publish()` takes (`PublishOptions`). */
const PUBLISH_OPTION_KEYS: ReadonlySet<string> = new Set<keyof PublishOptions>([
  'manager',
  'standalone',
  'headers',
  'correlationId',
  'causationId',
  'occurredAt',
  'delay',
  'deliverAt',
]);

/**
 * Refuses what is not a `PublishOptions` object: a typo'd key (`delayMs`, `deliverAT`) would otherwise
 * publish at once, and a `standalone` that is not a boolean (`'false'`) would write outside the caller's
 * transaction.
 */
function assertPublishOptions(options: unknown): asserts options is PublishOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidPublishOptionsError('(options)', `pass an object of options or leave them out, got ${options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options}.`);
  }
  for (const key of Object.keys(options)) {
    if (!PUBLISH_OPTION_KEYS.has(key)) {
      throw new InvalidPublishOptionsError(key, `not an option of publish(); the options are ${[...PUBLISH_OPTION_KEYS].join(', ')}.`);
    }
  }
  const { standalone, manager } = options as PublishOptions;
  if (standalone !== undefined && typeof standalone !== 'boolean') {
    throw new InvalidPublishOptionsError('standalone', `use true or false, got ${typeof standalone}.`);
  }
  if (manager !== undefined && (typeof manager !== 'object' || manager === null)) {
    throw new InvalidPublishOptionsError('manager', 'pass a TypeORM EntityManager, or leave it out to join the ambient transaction.');
  }
}

/** When a delayed event becomes due, from `delay` / `deliverAt`; `undefined` for "at once". */
function deliveryTime(options: PublishOptions): Date | undefined {
  const { delay, deliverAt } = options;
  if (delay !== undefined && deliverAt !== undefined) {
    throw new InvalidPublishOptionsError('delay', 'give delay or deliverAt, not both.');
  }
  if (delay !== undefined) {
    if (typeof delay !== 'number' || !Number.isInteger(delay) || delay < 0 || delay > 366 * 86_400_000) {
      throw new InvalidPublishOptionsError('delay', 'use a whole number of milliseconds from 0 to 366 days (31,622,400,000).');
    }
    return delay === 0 ? undefined : new Date(Date.now() + delay);
  }
  if (deliverAt !== undefined) {
    if (!(deliverAt instanceof Date) || Number.isNaN(deliverAt.getTime())) {
      throw new InvalidPublishOptionsError('deliverAt', 'pass a valid Date.');
    }
    // Past year 9999 its ISO form (+010000-…) is no time PostgreSQL reads: the insert would fail.
    if (deliverAt.getTime() > LATEST_OCCURRED_AT) {
      throw new InvalidPublishOptionsError('deliverAt', 'pass a Date up to 9999-12-31T23:59:59.999Z.');
    }
    return deliverAt.getTime() > Date.now() ? deliverAt : undefined;
  }
  return undefined;
}

/**
 * Publishes integration events through the transactional outbox: `publish()` writes one outbox row
 * per event in the caller's transaction, and the relay sends the rows to RabbitMQ once that transaction
 * has committed. A rolled-back transaction takes its events with it.
 */
@Injectable()
export class IntegrationEventPublisher {
  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly database: OutboxDatabase,
    private readonly managers: EntityManagerResolver,
    private readonly wakeSignal: WakeSignal,
    private readonly correlation: CorrelationContext,
    private readonly handoff: RelayHandoff,
  ) {}

  /**
   * Writes the event(s) to the outbox in the current transaction. Every event is checked before
   * anything is written: an event class without `@IntegrationEvent`, or a value that would not survive
   * JSON, fails the whole call with nothing written.
   *
   * @returns the message ids, in the order of the events
   * @throws NoActiveTransactionError when there is no transaction to join and `standalone` is not set
   * @throws IntegrationEventSerializationError when an event is not plain JSON data
   * @throws InvalidPublishOptionsError when an option is unknown or not valid
   *
   * @example
   * ```ts
   * @Transactional()
   * async placeOrder(command: PlaceOrderCommand) {
   *   const order = await this.orders.save(Order.place(command));
   *   await this.publisher.publish(new OrderCreatedIntegrationEvent(order.id));
   * }
   * ```
   */
  async publish(events: object | readonly object[], options: PublishOptions = {}): Promise<string[]> {
    assertPublishOptions(options);
    const list: readonly object[] = Array.isArray(events) ? events : [events];
    // An empty list is checked as any other (its options, its transaction): a call that is wrong with no
    // events would be wrong the day it has some.
    const records = this.buildRecords(list, options);

    const manager = this.managers.resolve(options.manager);
    if (manager && manager.dataSource !== this.database.dataSource) {
      throw new InvalidPublishOptionsError(
        'manager',
        options.manager
          ? 'this EntityManager belongs to another DataSource than the outbox\'s (see the module\'s "dataSourceName" option).'
          : 'none was given, and the ambient (@Transactional) transaction is on another DataSource than the outbox\'s: ' +
              'pass { manager } of the outbox\'s DataSource, or see the module\'s "dataSourceName" and "transactionConnectionName" options.',
      );
    }
    const inTransaction = manager?.queryRunner?.isTransactionActive === true;
    if (!inTransaction && !options.standalone) {
      throw options.manager ? new NoActiveTransactionError('the EntityManager passed as { manager } is not in a transaction') : new NoActiveTransactionError();
    }
    if (records.length === 0) return [];
    const target = inTransaction ? manager! : this.database.dataSource.manager;
    const queryRunner = inTransaction ? target.queryRunner! : undefined;

    // Rows due at once go to this process's relay straight after the commit, leased to it from the
    // insert (see RelayHandoff), when savepoints can be followed and the relay takes them. Once a
    // transaction has written rows for a claim, the rest of it goes that way too: a later, leased row
    // would be handed over and published before them.
    const depth = queryRunner ? OutboxCommitSubscriber.depthOf(queryRunner) : undefined;
    // Monotonic (performance.now()): how long a lease has run must not follow a wall clock stepped back.
    const leasedAt = performance.now();
    const granted =
      (queryRunner === undefined || (depth !== undefined && !OutboxCommitSubscriber.wroteUnleasedRows(queryRunner))) &&
      records.every((record) => record.availableAt === undefined)
        ? this.handoff.leaseForInsert(records.length)
        : undefined;

    try {
      await this.database.store.insert(target, records, granted?.lease);
    } catch (error) {
      if (granted) this.handoff.discard([granted.reservation]);
      // A caller that catches this must not have its transaction, aborted by the failed INSERT, commit
      // as a silent rollback.
      if (queryRunner) OutboxCommitSubscriber.noteFailedWrite(queryRunner);
      throw error;
    }

    const handedOff = granted ? records.map(toHandedOffRecord) : undefined;
    if (queryRunner) {
      // Told to the relay when (and only if) this transaction commits.
      OutboxCommitSubscriber.noteWrite(queryRunner, handedOff && { depth: depth!, leasedAt, records: handedOff, reservation: granted!.reservation });
    } else if (handedOff) {
      this.handoff.handOff(handedOff, leasedAt, granted!.reservation);
    } else {
      this.wakeSignal.notify();
    }
    return records.map((record) => record.id);
  }

  private buildRecords(events: readonly object[], options: PublishOptions): NewOutboxRecord[] {
    const { serviceName, outbox, consumer } = this.config.options;
    // Left out: now. Null is a value, refused below with anything else that is not a Date.
    const occurredAt = options.occurredAt === undefined ? new Date() : options.occurredAt;
    if (!(occurredAt instanceof Date) || Number.isNaN(occurredAt.getTime())) {
      throw new InvalidPublishOptionsError('occurredAt', 'pass a valid Date.');
    }
    // AMQP's timestamp property is unsigned (amqplib cannot encode an earlier one: the row would fail
    // for ever), and consumers read the header as ISO 8601 with a four-digit year.
    if (occurredAt.getTime() < 0 || occurredAt.getTime() > LATEST_OCCURRED_AT) {
      throw new InvalidPublishOptionsError('occurredAt', 'pass a Date from 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z.');
    }
    const availableAt = deliveryTime(options);
    const ambient = this.correlation.current();
    // The caller's trace (an HTTP request, a handler) continues through the relay to the consumers.
    const traceHeaders = activeTraceHeaders();
    const correlationId =
      options.correlationId === undefined ? ambient.correlationId : validateCorrelationId(options.correlationId);
    const causationId =
      options.causationId === undefined ? ambient.causationId : validateCorrelationId(options.causationId, 'causationId');
    // Checked here too for an empty list of events, whose call is refused as the same call with events is.
    validateApplicationHeaders(options.headers);

    return events.map((event) => {
      if (typeof event !== 'object' || event === null) {
        throw new InvalidPublishOptionsError('events', `expected integration event instances, got ${String(event)}.`);
      }
      const { name, version } = getIntegrationEventMetadata(event.constructor);
      const payload = serializeEvent(name, event, consumer.maxDepth);
      const size = Buffer.byteLength(payload);
      if (size > outbox.maxPayloadBytes) {
        throw new IntegrationEventSerializationError(
          name,
          '$',
          `is ${size} bytes of JSON, more than outbox.maxPayloadBytes (${outbox.maxPayloadBytes}); send a reference ` +
            'to large data instead of the data',
        );
      }
      const id = newMessageId();
      return {
        id,
        eventName: name,
        eventVersion: version,
        payload,
        occurredAt,
        availableAt,
        headers: {
          ...buildMessageHeaders(
            {
              eventName: name,
              eventVersion: version,
              occurredAt,
              sourceService: serviceName,
              correlationId: correlationId ?? id,
              causationId,
            },
            options.headers,
          ),
          ...traceHeaders,
        },
      };
    });
  }
}

/** A written row as the relay publishes it: what a claim would have read back. */
function toHandedOffRecord(record: NewOutboxRecord): ClaimedOutboxRecord {
  return {
    id: record.id,
    eventName: record.eventName,
    eventVersion: record.eventVersion,
    payload: record.payload,
    headers: record.headers,
    occurredAt: record.occurredAt,
    attempts: 0,
  };
}
