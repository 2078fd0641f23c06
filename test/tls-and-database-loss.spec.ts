import type { TestingModule } from '@nestjs/testing';
import { IntegrationEventPublisher, OutboxRelay } from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { eventually } from './support/eventually';
import { startTestApp, trackHandlerQueues } from './support/test-app';
import { TcpProxy } from './support/tcp-proxy';
import { FatalAtReadyProxy } from './support/fatal-at-ready-proxy';
import { CapturingLogger } from './support/capturing-logger';
import { TestNamespace } from './support/test-namespace';
import { TlsTerminator } from './support/tls-terminator';
import { databaseUrlVia, rabbitMqUrlVia, TEST_DATABASE_ADDRESS, TEST_DATABASE_URL, TEST_RABBITMQ_ADDRESS } from './support/services';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { DataSource } from 'typeorm';
import { Test } from '@nestjs/testing';
import { IntegrationEventsModule } from 'nestjs-integration-events';
import { testOptions } from './support/test-app';

describe('amqps (TLS)', () => {
  let ns: TestNamespace;
  let terminator: TlsTerminator;

  beforeAll(async () => {
    ns = await TestNamespace.create();
    terminator = await TlsTerminator.start(TEST_RABBITMQ_ADDRESS);
  });

  afterAll(async () => {
    await terminator?.stop();
    await ns?.cleanup();
  });

  it('connects over TLS with the certificate given in rabbitmq.socketOptions, and delivers', async () => {
    const app = await startTestApp(ns, {
      providers: [OrderCreatedRecorder],
      options: { rabbitmq: { url: rabbitMqUrlVia(terminator.port, { protocol: 'amqps:', host: 'localhost' }), socketOptions: { ca: [terminator.certificate] } } },
    });
    try {
      const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('over-tls'), { standalone: true });
      await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([id]));
    } finally {
      await app.close();
    }
  });

  it('refuses a certificate it was not told to trust', async () => {
    await expect(
      startTestApp(ns, { options: { rabbitmq: { url: rabbitMqUrlVia(terminator.port, { protocol: 'amqps:', host: 'localhost' }) } } }),
    ).rejects.toThrow(/self.signed certificate/);
  });
});

/** PostgreSQL restarted or unreachable: the relay and the consumers recover by themselves. */
/** An app whose TypeORM DataSource (a pool of at most 4) reaches PostgreSQL through a proxy on `port`. */
async function startAppThroughDatabaseProxy(
  ns: TestNamespace,
  port: number,
  pollIntervalMs: number,
  logger: Parameters<TestingModule['useLogger']>[0],
): Promise<TestingModule> {
  const app = await Test.createTestingModule({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url: databaseUrlVia(port), schema: ns.schema, extra: { max: 4, allowExitOnIdle: true } }),
      ClsModule.forRoot({
        global: true,
        plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })],
      }),
      IntegrationEventsModule.forRoot(testOptions(ns, { relay: { pollIntervalMs } })),
    ],
    providers: [OrderCreatedRecorder],
  }).compile();
  app.useLogger(logger);
  await app.init();
  trackHandlerQueues(ns, app);
  return app;
}

describe('database connection loss', () => {
  let ns: TestNamespace;
  let proxy: TcpProxy;
  let app: TestingModule;

  beforeAll(async () => {
    ns = await TestNamespace.create();
    proxy = await TcpProxy.create(TEST_DATABASE_ADDRESS);
    await proxy.accept();
    app = await startAppThroughDatabaseProxy(ns, proxy.port, 100, process.env.TEST_LOGS ? console : ['error']);
  });

  afterAll(async () => {
    await app?.close();
    await proxy?.stop();
    await ns?.cleanup();
  });

  it('keeps relaying and consuming after every database connection was cut and refused for a while', async () => {
    const [before] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('before-db-loss'), { standalone: true });
    await eventually(() => expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toContain(before));
    // Handled is not yet marked: the relay marks a confirmed row up to 50 ms later, with the rows after it.
    await eventually(async () => expect((await ns.outboxRows()).map((r) => [r.id, r.status])).toEqual([[before, 'sent']]));

    await proxy.refuse();
    proxy.cut();
    // Rows committed meanwhile by another process (straight to the database) wait in the outbox.
    await ns.insertOutboxRows(3);
    await eventually(async () => expect((await ns.outboxRows()).filter((r) => r.status === 'pending')).toHaveLength(3));
    await proxy.accept();

    await eventually(() => expect(app.get(OrderCreatedRecorder).received.filter((r) => r.event.orderId.startsWith('bulk-'))).toHaveLength(3), {
      timeoutMs: 30_000,
    });
    expect(app.get(OutboxRelay).isRunning).toBe(true);
    await eventually(async () => expect((await ns.outboxRows()).every((r) => r.status === 'sent')).toBe(true));
  });
});

describe('a database connection terminated as the pool hands it out', () => {
  let ns: TestNamespace;
  let proxy: FatalAtReadyProxy;
  let app: TestingModule;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    ns = await TestNamespace.create();
    proxy = await FatalAtReadyProxy.start(TEST_DATABASE_ADDRESS, TEST_DATABASE_URL);
    // The relay polls rarely: the rows of this process reach it at their commit, without a poll.
    app = await startAppThroughDatabaseProxy(ns, proxy.port, 60_000, logger);
  });

  afterAll(async () => {
    await app?.close();
    await proxy?.stop();
    await ns?.cleanup();
  });

  it('does not crash the service when the FATAL comes in the same read as the ReadyForQuery, and goes on', async () => {
    const publisher = app.get(IntegrationEventPublisher);
    const recorder = app.get(OrderCreatedRecorder);
    const [first] = await publisher.publish(new OrderCreatedIntegrationEvent('before-fatal'), { standalone: true });
    await eventually(() => expect(recorder.received.map((r) => r.context.messageId)).toEqual([first]));
    // Marked sent: the relay is done with it and the service is idle.
    await eventually(async () => expect((await ns.outboxRows()).map((r) => r.status)).toEqual(['sent']));

    const dataSource = app.get(DataSource);
    const pool = (dataSource.driver as unknown as { master: { connect(): Promise<{ release(): void }>; idleCount: number; totalCount: number } }).master;
    // Take all of the pool's connections, so that the next query needs a new one.
    await eventually(() => expect(pool.idleCount).toBe(pool.totalCount));
    const held = await Promise.all(Array.from({ length: pool.totalCount }, () => pool.connect()));
    expect(pool.totalCount).toBe(held.length);
    proxy.arm();
    // node-postgres hands the new connection to TypeORM on its ReadyForQuery and reads the FATAL in the
    // same turn, before TypeORM listens for its errors: without a listener, an uncaught exception. The
    // connection is dead, so the query on it fails; the service stays up.
    await expect(dataSource.query('SELECT 1')).rejects.toThrow(/not queryable/);
    expect(proxy.terminated).toBe(1);
    expect(logger.lines.filter((line) => line.startsWith('warn') && line.includes('terminating connection due to administrator command'))).toHaveLength(1);
    // The pool dropped the dead connection; the next ones work, and events go through.
    expect(pool.totalCount).toBe(held.length);
    for (const client of held) client.release();
    const [second] = await publisher.publish(new OrderCreatedIntegrationEvent('after-fatal'), { standalone: true });
    await eventually(() => expect(recorder.received.map((r) => r.context.messageId)).toEqual([first, second]));
  });
});
