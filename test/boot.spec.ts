import * as net from 'node:net';
import { Injectable, Module, Scope } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { TransactionHost } from '@nestjs-cls/transactional';
import { DataSource } from 'typeorm';
import {
  BrokerConnectionError,
  DuplicateHandlerQueueError,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  IntegrationEventsModule,
  type IntegrationEventsModuleAsyncOptions,
  InProcessBroker,
  InvalidIntegrationEventHandlerError,
  InvalidIntegrationEventsOptionsError,
  InvalidPublishOptionsError,
  OutboxTableMissingError,
  TableShapeMismatchError,
  TransactionsNotConfiguredError,
  type IIntegrationEventHandler,
} from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { CapturingLogger } from './support/capturing-logger';
import { consistently } from './support/eventually';
import { TEST_RABBITMQ_ADDRESS } from './support/services';
import { bootMessage, bootRefused, infrastructureImports, startTestApp, testOptions, type TestAppOptions, transactionsOnAnotherDataSource } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

class NotAnEvent {
  constructor(readonly id: string) {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class HandlerWithoutHandle {}

@IntegrationEventHandler(NotAnEvent)
class HandlerOfUndecoratedEvent implements IIntegrationEventHandler<NotAnEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'shared' })
class FirstClaimant implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'shared' })
class SecondClaimant implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@Injectable({ scope: Scope.REQUEST })
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class RequestScopedHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'billing.charge', deadLetterQueue: 'billing.dlq' })
class ChargeHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'billing.refund', deadLetterQueue: 'billing.dlq' })
class RefundHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'billing.audit', deadLetterQueue: 'billing.charge' })
class DeadLettersIntoChargeQueue implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

/** `maxAttempts` belongs under `retry`: at the top level it would be silently ignored. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { maxAttempts: 3 } as never)
class MisplacedOptionHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { prefetch: null } as never)
class NullPrefetchHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

/** `null` would pass the name pattern as the string "null", and amqplib would declare a server-named queue. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: null } as never)
class NullQueueHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { deadLetterQueue: null } as never)
class NullDeadLetterQueueHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

/** Names ChargeHandler's first retry wait queue on RabbitMQ as its own queue. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'billing.charge.retry.0ms' })
class TakesChargeRetries implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

/** Names its own first retry wait queue as its dead-letter queue. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'billing.audit', deadLetterQueue: 'billing.audit.retry.0ms' })
class DeadLettersIntoOwnRetries implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

/** A queue name of 197 characters: valid, but the default dead-letter queue's (".dlq" added) is not. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'q'.repeat(197) })
class LongQueueHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { prefetch: '5' } as never)
class StringPrefetchHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent, { retry: null } as never)
class NullRetryHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  handle(): void {}
}

/** Wiring mistakes fail `app.init()` with an error that names the culprit and the fix. */
describe('boot', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await TestNamespace.create();
  });

  afterAll(async () => {
    await ns.cleanup();
  });

  it('refuses a handler without handle()', async () => {
    const boot = bootRefused(ns, { providers: [HandlerWithoutHandle] });
    await expect(boot).rejects.toThrow(InvalidIntegrationEventHandlerError);
    await expect(boot).rejects.toThrow(/HandlerWithoutHandle.*no handle\(event, context\) method/);
  });

  it('refuses a handler whose event class has no @IntegrationEvent', async () => {
    await expect(bootRefused(ns, { providers: [HandlerOfUndecoratedEvent] })).rejects.toThrow(
      /HandlerOfUndecoratedEvent: its event class NotAnEvent has no @IntegrationEvent decorator/,
    );
  });

  it('refuses two handlers claiming one queue', async () => {
    const boot = bootRefused(ns, { providers: [FirstClaimant, SecondClaimant] });
    await expect(boot).rejects.toBeInstanceOf(DuplicateHandlerQueueError);
    await expect(boot).rejects.toThrow(/FirstClaimant and SecondClaimant both resolve to queue "shared"/);
  });

  it('names the queue two handlers share when it is a dead-letter queue', async () => {
    const boot = bootRefused(ns, { providers: [ChargeHandler, RefundHandler] });
    await expect(boot).rejects.toBeInstanceOf(DuplicateHandlerQueueError);
    await expect(boot).rejects.toThrow(/ChargeHandler and RefundHandler both resolve to queue "billing\.dlq"/);
    const intoQueue = bootRefused(ns, { providers: [ChargeHandler, DeadLettersIntoChargeQueue] });
    await expect(intoQueue).rejects.toThrow(/ChargeHandler and DeadLettersIntoChargeQueue both resolve to queue "billing\.charge"/);
  });

  it('refuses a queue that is another handler\'s retry wait queue on RabbitMQ, naming it; in-process, where there is none, boots', async () => {
    const boot = bootRefused(ns, { providers: [ChargeHandler, TakesChargeRetries] });
    await expect(boot).rejects.toBeInstanceOf(DuplicateHandlerQueueError);
    await expect(boot).rejects.toThrow(
      'Handlers ChargeHandler and TakesChargeRetries both resolve to queue "billing.charge.retry.0ms" (a retry wait queue of ChargeHandler\'s, on RabbitMQ).',
    );
    expect(await bootMessage(ns, { providers: [ChargeHandler, TakesChargeRetries], options: { inProcess: { broker: new InProcessBroker() } } })).toBe('booted');
    await expect(bootRefused(ns, { providers: [DeadLettersIntoOwnRetries] })).rejects.toThrow(
      'DeadLettersIntoOwnRetries: deadLetterQueue "billing.audit.retry.0ms" is one of its own retry wait queues on RabbitMQ: name another.',
    );
  });

  it('says it is the default dead-letter queue\'s name that is too long, not a deadLetterQueue the handler never gave', async () => {
    await expect(bootRefused(ns, { providers: [LongQueueHandler] })).rejects.toThrow(
      'its dead-letter queue\'s default name, the queue\'s with ".dlq"',
    );
    await expect(bootRefused(ns, { providers: [LongQueueHandler] })).rejects.toThrow('give it a shorter queue, or a deadLetterQueue of its own');
  });

  it('shows a refused handler option as it was given: a string quoted, a null retry as "retry"', async () => {
    await expect(bootRefused(ns, { providers: [StringPrefetchHandler] })).rejects.toThrow('StringPrefetchHandler: prefetch "5" is not a whole number');
    await expect(bootRefused(ns, { providers: [NullRetryHandler] })).rejects.toThrow('NullRetryHandler: retry null: pass an object of retry options');
  });

  it('refuses an inbox that forgets messages before they can come again, for the handlers that use it', async () => {
    const boots = (options: TestAppOptions['options']) => bootMessage(ns, { providers: [OrderCreatedRecorder], options });
    // relay.leaseMs is 30 s by default: a message can be published again that long after it was handled;
    // and its record is dated when the call starts, which may take the handler's timeoutMs (60 s by
    // default), and its commit as long again.
    expect(await boots({ inbox: { retentionMs: 179_999 }, consumer: { retry: { maxDelayMs: 1_000 } } })).toContain(
      'OrderCreatedRecorder: its inbox forgets a handled message after inbox.retentionMs (179999 ms), sooner than it can come again: ' +
        'a record, dated when its call starts, must outlast the call and its commit (twice its timeoutMs, 120000 ms), then twice the ' +
        'longest a message can take to come again (30000 ms: the larger of relay.leaseMs and its longest retry delay), 180000 ms in all',
    );
    expect(await boots({ inbox: { retentionMs: 180_000 }, consumer: { retry: { maxDelayMs: 1_000 } } })).toBe('booted');
    // The retry delays count too: at most 5 minutes by default.
    expect(await boots({ inbox: { retentionMs: 719_999 } })).toContain('(300000 ms: the larger of relay.leaseMs and its longest retry delay), 720000 ms in all');
    expect(await boots({ inbox: { retentionMs: 720_000 } })).toBe('booted');
    // So does the handler's timeout.
    expect(await boots({ inbox: { retentionMs: 720_000 }, consumer: { handlerTimeoutMs: 60_001 } })).toContain('(twice its timeoutMs, 120002 ms)');
    // A handler that is never retried has no retry delay.
    expect(await boots({ inbox: { retentionMs: 180_000 }, consumer: { retry: { maxAttempts: 1 } } })).toBe('booted');
    // Without the inbox nothing is remembered, and nothing to check.
    expect(await boots({ inbox: { enabled: false, retentionMs: 1_000 } })).toBe('booted');
  });

  it('refuses a handler option it does not know (a misplaced retry option), and null where a value belongs', async () => {
    await expect(bootRefused(ns, { providers: [MisplacedOptionHandler] })).rejects.toThrow(
      /MisplacedOptionHandler: it has an unknown option "maxAttempts"\. The handler options are queue, prefetch, .*under retry/s,
    );
    await expect(bootRefused(ns, { providers: [NullPrefetchHandler] })).rejects.toThrow(/NullPrefetchHandler: prefetch null is not a whole number/);
    await expect(bootRefused(ns, { providers: [NullQueueHandler] })).rejects.toThrow(/NullQueueHandler: queue null is not a valid queue name/);
    await expect(bootRefused(ns, { providers: [NullDeadLetterQueueHandler] })).rejects.toThrow(
      /NullDeadLetterQueueHandler: deadLetterQueue null is not a valid queue name/,
    );
  });

  it('refuses a request-scoped handler', async () => {
    await expect(bootRefused(ns, { providers: [RequestScopedHandler] })).rejects.toThrow(/must be singletons/);
  });

  it('refuses an isGlobal that is not a boolean, which Nest would read as true', () => {
    const options = { ...testOptions(ns), isGlobal: 'false' as never };
    expect(() => IntegrationEventsModule.forRoot(options)).toThrow(/"isGlobal" \(got "false"\): use true \(the default\) or false/);
    expect(() => IntegrationEventsModule.forRootAsync({ isGlobal: 'false' as never, useFactory: () => testOptions(ns) })).toThrow(
      InvalidIntegrationEventsOptionsError,
    );
    expect(IntegrationEventsModule.forRoot({ ...testOptions(ns), isGlobal: false }).global).toBe(false);
  });

  it('takes the default (global) for isGlobal: undefined, as for a key left out', () => {
    // The builder spreads the given extras over its own: an own `undefined` must not replace the `true`.
    expect(IntegrationEventsModule.forRoot({ ...testOptions(ns), isGlobal: undefined }).global).toBe(true);
    expect(IntegrationEventsModule.forRootAsync({ isGlobal: undefined, useFactory: () => testOptions(ns) }).global).toBe(true);
    expect(IntegrationEventsModule.forRoot(testOptions(ns)).global).toBe(true);
  });

  it('refuses what forRootAsync() would ignore: an unknown key, a module option beside useFactory, two ways or none', () => {
    const useFactory = () => testOptions(ns);
    class OptionsFactory {
      create() {
        return testOptions(ns);
      }
    }
    const refused = (options: unknown) => () => IntegrationEventsModule.forRootAsync(options as never);
    expect(refused({ useFactory, injects: [] })).toThrow(InvalidIntegrationEventsOptionsError);
    expect(refused({ useFactory, injects: [] })).toThrow(/"injects" \(got "\(unknown option\)"\): remove it; forRootAsync\(\) takes useFactory, /);
    expect(refused({ useFactory, relay: { enabled: false } })).toThrow(/"relay" .*the module's options are what useFactory returns/);
    expect(refused({ useFactory, useClass: OptionsFactory })).toThrow(/"useFactory, useClass" .*give exactly one of useFactory, useClass or useExisting/);
    expect(refused({ inject: [] })).toThrow(/"useFactory" \(got undefined\): give exactly one of/);
    expect(refused({ useFactory: testOptions(ns) })).toThrow(/"useFactory" .*pass a function that returns the options/);
    expect(refused(null)).toThrow(InvalidIntegrationEventsOptionsError);
    // Every key Nest's builder reads still passes.
    const module = IntegrationEventsModule.forRootAsync({ imports: [], inject: [], provideInjectionTokensFrom: [], isGlobal: false, useFactory });
    expect(module.global).toBe(false);
    expect(IntegrationEventsModule.forRootAsync({ useClass: OptionsFactory }).module).toBe(IntegrationEventsModule);
    // As Nest reads them: a way left falsy is not given, and useExisting may name a provider by any token.
    expect(IntegrationEventsModule.forRootAsync({ useFactory, useClass: null as never }).module).toBe(IntegrationEventsModule);
    expect(IntegrationEventsModule.forRootAsync({ useExisting: 'OPTIONS_FACTORY' as never }).module).toBe(IntegrationEventsModule);
    expect(refused({ useExisting: 42 })).toThrow(/"useExisting" \(got 42\): pass a provider's token/);
  });

  it('refuses a bad option where forRoot() is called', () => {
    const call = () => IntegrationEventsModule.forRoot(testOptions(ns, { relay: { batchSize: 0 } }));
    expect(call).toThrow(InvalidIntegrationEventsOptionsError);
    expect(call).toThrow(/"relay\.batchSize" \(got 0\): use a whole number from 1 to 10000/);
  });

  it('fails forRootAsync() boot with a catchable error naming the option, instead of exiting the process', async () => {
    // Typed with the exported name, as an application building its options elsewhere would.
    const asyncOptions: IntegrationEventsModuleAsyncOptions = {
      useFactory: async () => testOptions(ns, { consumer: { queueType: 'lazy' as never } }),
    };
    @Module({
      imports: [...infrastructureImports(ns), IntegrationEventsModule.forRootAsync(asyncOptions)],
    })
    class AppModule {}
    // NestFactory exits the process on errors thrown while providers are built (abortOnError): the
    // option check must run later, where the error reaches this caller.
    const boot = NestFactory.createApplicationContext(AppModule, { logger: false });
    await expect(boot).rejects.toThrow(InvalidIntegrationEventsOptionsError);
    await expect(boot).rejects.toMatchObject({ field: 'consumer.queueType' });
  });

  it('accepts isGlobal: false (the module definition\'s own option) and then needs an import to inject the publisher', async () => {
    const module = IntegrationEventsModule.forRoot({ ...testOptions(ns), isGlobal: false });
    expect(module.global).toBe(false);
    const app = await startTestApp(ns, { integrationEventsModule: module });
    try {
      expect(app.get(IntegrationEventPublisher)).toBeInstanceOf(IntegrationEventPublisher);
    } finally {
      await app.close();
    }
  });

  it('refuses isGlobal returned by a forRootAsync() factory, where Nest would ignore it', async () => {
    @Module({
      imports: [
        ...infrastructureImports(ns),
        IntegrationEventsModule.forRootAsync({ useFactory: () => ({ ...testOptions(ns), isGlobal: false }) }),
      ],
    })
    class AppModule {}
    const outcome = await NestFactory.createApplicationContext(AppModule, { logger: false }).then(
      async (app) => {
        await app.close();
        return 'booted';
      },
      (error: unknown) => error,
    );
    expect(outcome).toMatchObject({ field: 'isGlobal', message: expect.stringContaining('forRootAsync({ isGlobal, useFactory })') });
  });

  it('boots with isGlobal: undefined in what a forRootAsync() factory returns (an optional setting left out)', async () => {
    const app = await startTestApp(ns, {
      integrationEventsModule: IntegrationEventsModule.forRootAsync({ useFactory: () => ({ ...testOptions(ns), isGlobal: undefined }) }),
    });
    await app.close();
  });

  it('fails boot when transactionConnectionName names no nestjs-cls plugin, or one on another DataSource', async () => {
    // A typo: publish() in @Transactional('main') would otherwise fail at run time as if outside a transaction.
    const typo = await startTestApp(ns, { options: { transactionConnectionName: 'mian', consumer: { enabled: false } } }).then(
      async (booted) => {
        await booted.close();
        return 'booted';
      },
      (error: unknown) => error,
    );
    expect(typo).toBeInstanceOf(TransactionsNotConfiguredError);
    expect((typo as Error).message).toMatch(/"transactionConnectionName" \("mian"\) needs @nestjs-cls\/transactional/);

    // A plugin named so, but on the application's other DataSource.
    const elsewhere = Test.createTestingModule({
      imports: [
        ...transactionsOnAnotherDataSource(ns, 'main'),
        IntegrationEventsModule.forRoot({ ...testOptions(ns), dataSourceName: 'events', transactionConnectionName: 'main', consumer: { enabled: false } }),
      ],
    }).compile();
    const moduleRef = await elsewhere;
    try {
      await expect(moduleRef.init()).rejects.toThrow(/needs @nestjs-cls\/transactional on the DataSource the library uses \("events"\)/);
    } finally {
      await moduleRef.close();
    }
  });

  it('warns at boot when the default nestjs-cls transactions run on another DataSource, and publish() in one names that, not an option never given', async () => {
    const logger = new CapturingLogger();
    const moduleRef = await Test.createTestingModule({
      imports: [
        ...transactionsOnAnotherDataSource(ns),
        IntegrationEventsModule.forRoot({ ...testOptions(ns), dataSourceName: 'events', consumer: { enabled: false } }),
      ],
    }).compile();
    moduleRef.useLogger(logger);
    try {
      await moduleRef.init();
      expect(logger.lines).toContainEqual(expect.stringContaining("The nestjs-cls transactions found run on another DataSource than the outbox's (\"events\"): publish() inside them is refused"));
      const publisher = moduleRef.get(IntegrationEventPublisher);
      const rowsBefore = await ns.outboxRows();
      const attempt = moduleRef.get(TransactionHost).withTransaction(() => publisher.publish(new OrderCreatedIntegrationEvent('o-elsewhere')));
      await expect(attempt).rejects.toThrow(InvalidPublishOptionsError);
      await expect(attempt).rejects.toThrow(
        'Invalid publish() option "manager": none was given, and the ambient (@Transactional) transaction is on another DataSource than the outbox\'s',
      );
      // Nothing written (an earlier test's rows may be there).
      expect((await ns.outboxRows()).map((row) => row.id)).toEqual(rowsBefore.map((row) => row.id));
    } finally {
      await moduleRef.close();
    }
  });

  it('warns when the inbox handlers can hold every connection of the pool, and not when they cannot', async () => {
    const bootWith = async (concurrency: number) => {
      const logger = new CapturingLogger();
      // The test DataSource's pool has 8 connections.
      const app = await startTestApp(ns, { providers: [OrderCreatedRecorder], options: { consumer: { concurrency } }, logger });
      await app.close();
      return logger.lines.filter((line) => line.includes('may hold'));
    };
    expect(await bootWith(10)).toEqual([
      expect.stringContaining('Handlers with the inbox may hold 10 database connections at once (their concurrency), and the pool has 8'),
    ]);
    expect(await bootWith(4)).toEqual([]);
  });

  it('warns when a handler\'s deliveries can wait past RabbitMQ\'s consumer_timeout, and not when they cannot', async () => {
    const bootWith = async (consumer: { concurrency: number; prefetch: number; handlerTimeoutMs: number; onDeadLetter?: () => void }) => {
      const logger = new CapturingLogger();
      const app = await startTestApp(ns, { providers: [OrderCreatedRecorder], options: { consumer }, logger });
      await app.close();
      return logger.lines.filter((line) => line.includes('consumer_timeout'));
    };
    // 50 in hand, one at a time, each slot held up to 60 s by the call and 10 s by its copy's confirm:
    // the last waits for 49 of them, then its own, and is acknowledged after 58 min at worst.
    const warnings = await bootWith({ concurrency: 1, prefetch: 50, handlerTimeoutMs: 60_000 });
    expect(warnings).toEqual([
      expect.stringContaining(
        'Handler OrderCreatedRecorder: a message can wait 58 min or more before it is acknowledged (prefetch 50 ÷ concurrency 1, rounded up, ' +
          'less one: 49 call slot hold(s) of 70000 ms (timeoutMs 60000 + relay.confirmTimeoutMs 10000 for a copy) before its call starts, ' +
          'then 70000 ms for its call and copy)',
      ),
    ]);
    expect(warnings[0]).toContain('Give it prefetch: 25 (or less)');
    // The defaults: 4 holds of 70 s, then its own.
    expect(await bootWith({ concurrency: 10, prefetch: 50, handlerTimeoutMs: 60_000 })).toEqual([]);
    // Two 14-minute calls in a row fit in 30 min; with the hook after the first (its message acknowledged
    // before it runs) they do not.
    const atTheEdge = { concurrency: 1, prefetch: 2, handlerTimeoutMs: 14 * 60_000 };
    expect(await bootWith(atTheEdge)).toEqual([]);
    const withHook = await bootWith({ ...atTheEdge, onDeadLetter: () => undefined });
    expect(withHook).toEqual([
      expect.stringContaining(
        'can wait 42 min or more before it is acknowledged (prefetch 2 ÷ concurrency 1, rounded up, less one: 1 call slot hold(s) of 1690000 ms ' +
          '(timeoutMs 840000 + relay.confirmTimeoutMs 10000 for a copy + timeoutMs 840000 for the onDeadLetter hook) before its call starts, ' +
          'then 850000 ms for its call and copy)',
      ),
    ]);
    expect(withHook[0]).toContain('Give it prefetch: 1 (or less)');
    // One call at a time with a hook, its own message acknowledged before the hook: no wait beyond its own.
    expect(await bootWith({ concurrency: 10, prefetch: 10, handlerTimeoutMs: 16 * 60_000, onDeadLetter: () => undefined })).toEqual([]);
  });

  it('fails boot when the outbox table was never created', async () => {
    await expect(bootRefused(ns, { options: { outbox: { table: 'no_such_outbox' } } })).rejects.toThrow(
      OutboxTableMissingError,
    );
  });

  it('fails boot when the outbox options name a table that is not an outbox table, naming the columns it lacks', async () => {
    const db = await ns.sql();
    await db.query(`CREATE TABLE "${ns.schema}".orders (id uuid PRIMARY KEY, status text NOT NULL)`);
    const error = (await startTestApp(ns, { options: { outbox: { table: 'orders' } } }).catch((e: unknown) => e)) as TableShapeMismatchError;
    expect(error).toBeInstanceOf(TableShapeMismatchError);
    expect(error).toMatchObject({ kind: 'outbox', table: `"${ns.schema}"."orders"` });
    expect(error.missingColumns).toEqual(expect.arrayContaining(['seq', 'event_name', 'payload', 'headers', 'lease_token']));
    expect(error.missingColumns).not.toContain('id');
    expect(error.message).toContain(`The table "${ns.schema}"."orders" is not an outbox table: it has no column seq, event_name`);
    // Nothing was written to it.
    expect((await db.query(`SELECT count(*)::int AS n FROM "${ns.schema}".orders`)).rows).toEqual([{ n: 0 }]);
  });

  it('fails boot when the broker refuses the credentials, without showing the password', async () => {
    const { host, port } = TEST_RABBITMQ_ADDRESS;
    const boot = bootRefused(ns, { options: { rabbitmq: { url: `amqp://guest:s3cr3t-pw@${host}:${port}` } } });
    await expect(boot).rejects.toBeInstanceOf(BrokerConnectionError);
    const error = (await boot.catch((e: unknown) => e)) as Error;
    expect(error.message).toMatch(/ACCESS.REFUSED/);
    expect(error.message).not.toContain('s3cr3t-pw');
  });

  it("fails boot, naming it, when the broker's frame_max is below what a message's headers need", async () => {
    // A broker set to frame_max = 4096 (RabbitMQ's minimum), played by a proxy that lowers the figure in
    // the broker's Connection.Tune; amqplib then agrees to 4096, as it would with such a broker.
    const server = net.createServer((client) => {
      const upstream = net.connect(TEST_RABBITMQ_ADDRESS.port, TEST_RABBITMQ_ADDRESS.host);
      let pending: Buffer | undefined = Buffer.alloc(0);
      client.on('data', (data) => upstream.write(data));
      upstream.on('data', (data: Buffer) => {
        if (!pending) return void client.write(data);
        pending = Buffer.concat([pending, data]);
        // Frames: type (1), channel (2), size (4), payload, 0xCE. Tune is method frame class 10, method 30:
        // channel_max (2), frame_max (4), heartbeat (2).
        // Complete frames go on as they come (the client answers each), the Tune one altered; after it, all as is.
        while (pending.length >= 7 && pending.length >= 8 + pending.readUInt32BE(3)) {
          const end = 8 + pending.readUInt32BE(3);
          const tune = pending[0] === 1 && pending.readUInt16BE(7) === 10 && pending.readUInt16BE(9) === 30;
          if (tune) pending.writeUInt32BE(4096, 13);
          client.write(pending.subarray(0, end));
          pending = pending.subarray(end);
          if (tune) {
            if (pending.length > 0) client.write(pending);
            pending = undefined;
            return;
          }
        }
      });
      for (const socket of [client, upstream]) {
        socket.on('error', () => undefined);
        socket.on('close', () => (client.destroy(), upstream.destroy()));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      const boot = bootRefused(ns, { options: { rabbitmq: { url: `amqp://guest:guest@127.0.0.1:${port}` } } });
      await expect(boot).rejects.toBeInstanceOf(BrokerConnectionError);
      await expect(boot).rejects.toThrow("The broker limits frames to 4096 bytes (its frame_max): the library needs at least 131072 (RabbitMQ's default)");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('fails boot naming the virtual host when the broker will not open it', async () => {
    const { host, port } = TEST_RABBITMQ_ADDRESS;
    const boot = bootRefused(ns, { options: { rabbitmq: { url: `amqp://guest:guest@${host}:${port}/no-such-vhost-${ns.id}` } } });
    await expect(boot).rejects.toBeInstanceOf(BrokerConnectionError);
    await expect(boot).rejects.toThrow(`the broker refused the virtual host "no-such-vhost-${ns.id}": it does not exist, or the user has no permissions on it`);
  });

  it('starts when the broker\'s host name does not resolve (a container restarting), warning with the host', async () => {
    const logger = new CapturingLogger();
    const app = await startTestApp(ns, {
      options: { rabbitmq: { url: 'amqp://guest:guest@rabbitmq-restarting.invalid:5672', reconnectInitialDelayMs: 100, reconnectMaxDelayMs: 200 } },
      logger,
    });
    try {
      expect(logger.text).toMatch(/RabbitMQ at amqp:\/\/guest:\*\*\*@rabbitmq-restarting\.invalid:5672\S* is unreachable \(.*(ENOTFOUND|EAI_AGAIN)/);
    } finally {
      await app.close();
    }
  });

  it('starts without a reachable broker and keeps committed events in the outbox meanwhile', async () => {
    const app = await startTestApp(ns, {
      options: { rabbitmq: { url: 'amqp://guest:guest@127.0.0.1:1', reconnectInitialDelayMs: 100, reconnectMaxDelayMs: 200 } },
    });
    try {
      const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('o-waits'), {
        standalone: true,
      });
      await consistently(async () => {
        const row = (await ns.outboxRows()).find((r) => r.id === id);
        expect(row).toMatchObject({ status: 'pending', attempts: 0 });
      }, { forMs: 500 });
    } finally {
      await app.close();
    }
  });
});
