/**
 * How to test your own code with `nestjs-integration-events/testing` — a worked example.
 *
 * The testing module runs the library on an in-process broker, so these tests need neither RabbitMQ
 * nor PostgreSQL: the database here is SQLite in memory (the outbox and inbox tables come from the
 * library's migrations). `kit.drain()` runs the relay and the consumers until nothing is left, so a test
 * never sleeps: publish or deliver, drain, then assert.
 */
import { Injectable } from '@nestjs/common';
import { CommandBus, CommandHandler, CqrsModule, EventPublisher, EventsHandler, type ICommandHandler, type IEventHandler, AggregateRoot } from '@nestjs/cqrs';
import { Test, type TestingModule } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional, Transactional } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { DataSource } from 'typeorm';
import {
  createInboxMigration,
  createOutboxMigration,
  IntegrationEvent,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  NonRetryableError,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { IntegrationEventsTestingModule, IntegrationEventsTestKit } from 'nestjs-integration-events/testing';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';

// --- The code under test: a command that raises a domain event, and an integration event handler. ---

@IntegrationEvent({ name: 'shipping.parcel-booked', version: 1 })
class ParcelBookedIntegrationEvent {
  constructor(
    readonly orderId: string,
    readonly carrier: string,
  ) {}
}

class ParcelBooked {
  constructor(readonly orderId: string) {}
}

class Parcel extends AggregateRoot {
  constructor(readonly orderId: string) {
    super();
    this.apply(new ParcelBooked(orderId));
  }
}

class BookParcelCommand {
  constructor(readonly orderId: string) {}
}

@Injectable()
class Carriers {
  booked: string[] = [];
  failFor = new Set<string>();
}

@CommandHandler(BookParcelCommand)
class BookParcelHandler implements ICommandHandler<BookParcelCommand> {
  constructor(
    private readonly events: EventPublisher,
    private readonly carriers: Carriers,
  ) {}

  @Transactional()
  async execute({ orderId }: BookParcelCommand): Promise<void> {
    if (this.carriers.failFor.has(orderId)) throw new NonRetryableError(`no carrier for ${orderId}`);
    this.carriers.booked.push(orderId);
    this.events.mergeObjectContext(new Parcel(orderId)).commit();
  }
}

@EventsHandler(ParcelBooked)
class ParcelBookedHandler implements IEventHandler<ParcelBooked> {
  constructor(private readonly integrationEvents: IntegrationEventPublisher) {}
  async handle(event: ParcelBooked): Promise<void> {
    await this.integrationEvents.publish(new ParcelBookedIntegrationEvent(event.orderId, 'acme'));
  }
}

/** Another service's event arrives: book a parcel for the order. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'shipping.order-created' })
class OrderCreatedHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  constructor(private readonly commandBus: CommandBus) {}
  async handle(event: OrderCreatedIntegrationEvent, _context: IntegrationEventContext): Promise<void> {
    await this.commandBus.execute(new BookParcelCommand(event.orderId));
  }
}

// --- The tests. ---

describe('testing your code with nestjs-integration-events/testing', () => {
  let moduleRef: TestingModule;
  let kit: IntegrationEventsTestKit;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({
          type: 'better-sqlite3',
          database: ':memory:',
          migrations: [createOutboxMigration(), createInboxMigration()],
          migrationsRun: true,
        }),
        ClsModule.forRoot({
          global: true,
          plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })],
        }),
        CqrsModule.forRoot(),
        IntegrationEventsTestingModule.forRoot({ serviceName: 'shipping' }),
      ],
      providers: [Carriers, BookParcelHandler, ParcelBookedHandler, OrderCreatedHandler],
    }).compile();
    moduleRef.useLogger(false);
    await moduleRef.init();
    kit = moduleRef.get(IntegrationEventsTestKit);
  });

  afterEach(async () => {
    await moduleRef.close();
  });

  it('asserts that a command publishes the right integration event, with its headers', async () => {
    await moduleRef.get(CommandBus).execute(new BookParcelCommand('order-1'));
    await kit.drain();

    expect(kit.publishedEvents(ParcelBookedIntegrationEvent)).toEqual([new ParcelBookedIntegrationEvent('order-1', 'acme')]);
    expect(kit.published[0]).toMatchObject({
      eventName: 'shipping.parcel-booked',
      eventVersion: 1,
      headers: { 'ie-source-service': 'shipping', 'ie-event-version': 1 },
    });
  });

  it('unit-tests an integration event handler: deliver the event, drain, assert the effects', async () => {
    const messageId = await kit.deliver(new OrderCreatedIntegrationEvent('order-2'));
    await kit.drain();

    expect(moduleRef.get(Carriers).booked).toEqual(['order-2']);
    // The handler's command published the next event of the flow, caused by the delivered message.
    const [booked] = kit.published.filter((message) => message.eventName === 'shipping.parcel-booked');
    expect(booked?.payload).toEqual({ orderId: 'order-2', carrier: 'acme' });
    expect(booked?.headers['ie-causation-id']).toBe(messageId);
  });

  it('sees a failing handler end in the dead-letter queue, drain included', async () => {
    moduleRef.get(Carriers).failFor.add('order-3');
    await kit.deliver(new OrderCreatedIntegrationEvent('order-3'));
    await kit.drain();

    expect(moduleRef.get(Carriers).booked).toEqual([]);
    expect(kit.broker.findQueue('shipping.order-created.dlq')?.depth).toBe(1);
    expect(kit.publishedEvents(ParcelBookedIntegrationEvent)).toEqual([]);
  });
});
