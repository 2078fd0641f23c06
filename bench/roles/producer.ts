/**
 * The business transaction, in a service process of its own: insert an order row, and (depending on the
 * mode) publish its integration event. Driven closed-loop at a concurrency, or paced at a rate.
 *
 * - `plain`        Baseline C: the transaction alone (TypeORM + nestjs-cls `@Transactional()`), no library.
 * - `dual-write`   the naive dual write: the same commit, then a direct amqplib publish awaiting its confirm.
 * - `ours`         `IntegrationEventPublisher.publish()` in the transaction; the relay runs in this process.
 * - `ours-commit-only` the same with the relay off (and no consumer anywhere): the commit path alone.
 * - `hand-outbox`  a hand-written outbox row, no library: in the library's table, with the same name,
 *                  version, JSON payload and headers, inserted with one more `query()` in the transaction
 *                  (unnamed, through TypeORM; a random v4 id from `randomUUID()`, where the library
 *                  prepares its statement and uses time-ordered v7 ids); nothing relays it.
 * - `ours-cqrs`    through the CommandBus: an AggregateRoot applies a domain event, an `@EventsHandler`
 *                  publishes the integration event (the cqrs bridge runs it inside the transaction).
 * - `ours-cqrs-off` the same CommandBus path, but the `@EventsHandler` publishes nothing.
 */
import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { AggregateRoot, CommandBus, CommandHandler, EventPublisher, EventsHandler, type ICommandHandler, type IEventHandler } from '@nestjs/cqrs';
import { Transactional, TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import * as amqp from 'amqplib';
import { IntegrationEventPublisher } from 'nestjs-integration-events';
import type { Role } from '../child';
import { AMOUNT_CENTS, CUSTOMER_ID, EVENT_NAME, eventBody, wireMessage } from '../lib/contract';
import { BenchOrderPlaced } from '../lib/event';
import { now, outboxTable, RABBITMQ_URL, sleep } from '../lib/helpers';
import { createApp } from '../lib/nest';

export type ProducerMode = 'plain' | 'dual-write' | 'hand-outbox' | 'ours' | 'ours-commit-only' | 'ours-cqrs' | 'ours-cqrs-off';

interface Args {
  mode: ProducerMode;
  schema: string;
  exchange: string;
  serviceName: string;
  /** Timed transactions, numbered 0…count-1. */
  count: number;
  /** Warm-up transactions before the clock starts, numbered count…count+warmup-1. */
  warmup: number;
  concurrency: number;
  /** Transactions per second; unset: closed loop at `concurrency`. */
  rate?: number;
  poolMax: number;
  /** The pool's idleTimeoutMillis (paced runs: --pool-idle-ms); pg's default when omitted. */
  poolIdleMs?: number;
}

class OrderPlacedDomainEvent {
  constructor(
    readonly n: number,
    readonly orderId: string,
  ) {}
}
class BenchOrder extends AggregateRoot {
  constructor(
    readonly n: number,
    readonly id: string,
  ) {
    super();
    this.apply(new OrderPlacedDomainEvent(n, id));
  }
}
class PlaceOrder {
  constructor(
    readonly n: number,
    /** Throw once the aggregate's events were committed to the bus (the bridge has run the publishing handler). */
    readonly rollBack = false,
  ) {}
}

/**
 * Transactions that publish and then throw, run one after another before the warm-up in the modes
 * that publish (numbered past every other: total…total+ROLLED_BACK-1; through the CommandBus, the
 * command handler throws after `order.commit()`). They roll back, and their events must never reach a
 * consumer, which counts any number outside its range as unexpected.
 */
const ROLLED_BACK = 20;
class DeliberateRollback extends Error {}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const ours = args.mode.startsWith('ours');
  const cqrs = args.mode.startsWith('ours-cqrs');
  const ordersTable = `"${args.schema}".orders`;
  const insertOrder = `INSERT INTO ${ordersTable} (id, customer_id, amount_cents) VALUES ($1, $2, $3)`;
  const insertOutboxRow =
    `INSERT INTO ${outboxTable(args.schema)} (id, event_name, event_version, payload, headers, occurred_at) ` +
    'VALUES ($1, $2, $3, $4, $5, $6)';

  @Injectable()
  class Orders {
    constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}
    @Transactional()
    async place(n: number, publisher?: IntegrationEventPublisher, rollBack = false): Promise<void> {
      const id = randomUUID();
      await this.txHost.tx.query(insertOrder, [id, CUSTOMER_ID, AMOUNT_CENTS]);
      if (publisher) await publisher.publish(new BenchOrderPlaced(n, id));
      if (rollBack) throw new DeliberateRollback(`transaction ${n} rolled back on purpose`);
    }
  }

  /** What a team writing its own outbox would do: the row in the same transaction, nothing else. */
  @Injectable()
  class HandWrittenOutbox {
    constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}
    @Transactional()
    async place(n: number): Promise<void> {
      const id = randomUUID();
      await this.txHost.tx.query(insertOrder, [id, CUSTOMER_ID, AMOUNT_CENTS]);
      const messageId = randomUUID();
      const occurredAt = new Date();
      const headers = {
        'ie-event-name': EVENT_NAME,
        'ie-event-version': 1,
        'ie-occurred-at': occurredAt.toISOString(),
        'ie-source-service': args.serviceName,
        'ie-correlation-id': messageId,
      };
      await this.txHost.tx.query(insertOutboxRow, [messageId, EVENT_NAME, 1, eventBody(n, id), JSON.stringify(headers), occurredAt.toISOString()]);
    }
  }

  @CommandHandler(PlaceOrder)
  class PlaceOrderHandler implements ICommandHandler<PlaceOrder> {
    constructor(
      private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
      private readonly events: EventPublisher,
    ) {}
    @Transactional()
    async execute({ n, rollBack }: PlaceOrder): Promise<void> {
      const order = this.events.mergeObjectContext(new BenchOrder(n, randomUUID()));
      await this.txHost.tx.query(insertOrder, [order.id, CUSTOMER_ID, AMOUNT_CENTS]);
      order.commit();
      if (rollBack) throw new DeliberateRollback(`transaction ${n} rolled back on purpose`);
    }
  }

  /** The seed's domain-event handler: turns the domain event into the integration event. */
  @EventsHandler(OrderPlacedDomainEvent)
  class PublishingHandler implements IEventHandler<OrderPlacedDomainEvent> {
    constructor(private readonly publisher: IntegrationEventPublisher) {}
    async handle(event: OrderPlacedDomainEvent): Promise<void> {
      await this.publisher.publish(new BenchOrderPlaced(event.n, event.orderId));
    }
  }

  @EventsHandler(OrderPlacedDomainEvent)
  class NonPublishingHandler implements IEventHandler<OrderPlacedDomainEvent> {
    handle(): void {}
  }

  const app = await createApp({
    poolMax: args.poolMax,
    poolIdleMs: args.poolIdleMs,
    cqrs,
    ...(ours
      ? {
          integrationEvents: {
            serviceName: args.serviceName,
            exchange: args.exchange,
            schema: args.schema,
            consumer: { enabled: false },
            relay: { enabled: args.mode !== 'ours-commit-only' },
          },
        }
      : {}),
    providers: cqrs ? [PlaceOrderHandler, args.mode === 'ours-cqrs' ? PublishingHandler : NonPublishingHandler] : [Orders, HandWrittenOutbox],
  });

  let transaction: (n: number) => Promise<void>;
  let rollingBack: ((n: number) => Promise<void>) | undefined;
  let closeBroker = async () => {};
  if (cqrs) {
    const commandBus = app.get(CommandBus);
    transaction = (n) => commandBus.execute(new PlaceOrder(n));
    if (args.mode === 'ours-cqrs') rollingBack = (n) => commandBus.execute(new PlaceOrder(n, true));
  } else if (args.mode === 'ours' || args.mode === 'ours-commit-only') {
    const orders = app.get(Orders);
    const publisher = app.get(IntegrationEventPublisher);
    transaction = (n) => orders.place(n, publisher);
    rollingBack = (n) => orders.place(n, publisher, true);
  } else if (args.mode === 'hand-outbox') {
    const outbox = app.get(HandWrittenOutbox);
    transaction = (n) => outbox.place(n);
  } else if (args.mode === 'dual-write') {
    const orders = app.get(Orders);
    const connection = await amqp.connect(RABBITMQ_URL);
    const channel = await connection.createConfirmChannel();
    await channel.assertExchange(args.exchange, 'topic', { durable: true });
    closeBroker = async () => {
      await channel.close();
      await connection.close();
    };
    transaction = async (n) => {
      await orders.place(n);
      committedAt[n] = now();
      const { body, options } = wireMessage(n);
      await new Promise<void>((resolve, reject) =>
        channel.publish(args.exchange, EVENT_NAME, body, options, (error: unknown) => (error ? reject(error) : resolve())),
      );
    };
  } else {
    const orders = app.get(Orders);
    transaction = (n) => orders.place(n);
  }

  const total = args.count + args.warmup;
  const committedAt = new Float64Array(total);
  let errors = 0;
  let firstError: string | undefined;
  const one = async (n: number) => {
    try {
      await transaction(n);
      if (args.mode !== 'dual-write') committedAt[n] = now();
    } catch (error) {
      errors++;
      firstError ??= String((error as Error)?.stack ?? error);
    }
  };
  const closedLoop = async (from: number, to: number) => {
    let next = from;
    await Promise.all(
      Array.from({ length: args.concurrency }, async () => {
        while (next < to) await one(next++);
      }),
    );
  };

  /** Transactions from…to-1 started at `rate` per second from now on, at most 256 in flight. */
  const pacedLoop = async (from: number, to: number, rate: number) => {
    const tStart = now();
    const inFlight = new Set<Promise<void>>();
    for (let n = from; n < to; n++) {
      const wait = tStart + ((n - from) * 1_000) / rate - now();
      if (wait >= 1) await sleep(wait);
      while (inFlight.size >= 256) await Promise.race(inFlight);
      const p: Promise<void> = one(n).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
  };

  io.send({ type: 'ready' });
  await io.next('go');
  let rolledBack = 0;
  // One after another: a burst would open pool connections the measured run does not otherwise use.
  for (let i = 0; rollingBack && i < ROLLED_BACK; i++) {
    try {
      await rollingBack(total + i);
    } catch (error) {
      if (error instanceof DeliberateRollback) rolledBack++;
      else {
        errors++;
        firstError ??= String((error as Error)?.stack ?? error);
      }
    }
  }
  // Warm the pool, the JIT and (for ours) the relay and the consumer: at the rate when paced (the
  // pipeline's steady state at that rate is what is measured), as fast as possible otherwise.
  if (args.rate) {
    await pacedLoop(args.count, total, args.rate);
    // The clock starts once the parent says so: when the warm-up's events were all handled (a cold
    // pipeline can leave a backlog that is not the rate's), or after a longest wait.
    io.send({ type: 'warmed', t: now() });
    await io.next('measure');
  } else {
    await closedLoop(args.count, total);
    await sleep(300);
  }

  const t0 = now();
  io.send({ type: 'started' });
  if (args.rate) await pacedLoop(0, args.count, args.rate);
  else await closedLoop(0, args.count);
  const tEnd = now();
  io.send({ type: 'finished' });
  await io.next('stop');
  await closeBroker();
  await app.close();
  if (firstError) console.error(`first error of ${errors}: ${firstError}`);
  return { t0, tEnd, committedAt, errors, rolledBack, rollbacksPlanned: rollingBack ? ROLLED_BACK : 0 };
};
