import type { TestingModule } from '@nestjs/testing';
import { OrderCreatedRecorder } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { rabbitmqctl } from './support/rabbitmqctl';
import { rabbitMqUrlVia, TEST_RABBITMQ_ADDRESS, TEST_RABBITMQ_URL } from './support/services';
import { TcpProxy } from './support/tcp-proxy';
import { startTestApp, testOptions, type TestAppOptions } from './support/test-app';
import { IntegrationEventsError } from 'nestjs-integration-events';
import { IntegrationEventsConfig } from '../libs/integration-events/src/options/integration-events.config';
import { RabbitMqConnection } from '../libs/integration-events/src/transport/rabbitmq/rabbitmq.connection';
import { TestNamespace } from './support/test-namespace';

/** A connection as the broker sees it: the name the client gave it, and the heartbeat negotiated (seconds). */
interface BrokerConnection {
  readonly name: string;
  readonly heartbeat: number;
}

/**
 * The broker's open connections whose client-given name (`connection_name`, shown in the management UI)
 * starts with `prefix`, by name. Every test names its connections after its own namespace, so the
 * connections of test files running at the same time are never among them.
 */
async function brokerConnections(prefix: string): Promise<BrokerConnection[]> {
  const { stdout } = await rabbitmqctl('-q', 'list_connections', 'client_properties', 'timeout', '--formatter', 'json');
  const rows = (stdout.trim() === '' ? [] : JSON.parse(stdout)) as Array<{
    client_properties: Array<[string, string, unknown]>;
    timeout: number;
  }>;
  return rows
    .map((row) => ({
      name: String(row.client_properties.find(([key]) => key === 'connection_name')?.[2] ?? ''),
      heartbeat: row.timeout,
    }))
    .filter((connection) => connection.name.startsWith(prefix))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The RabbitMQ connections a service opens, as the broker names and negotiates them. */
describe('RabbitMQ connection options', () => {
  let ns: TestNamespace;
  let app: TestingModule | undefined;
  /** What every connection of this test's app is named after (its `rabbitmq.connectionName`). */
  let connectionName: string;

  const start = async (options: TestAppOptions = {}) => {
    app = await startTestApp(ns, { providers: [OrderCreatedRecorder], ...options });
    return app;
  };

  beforeEach(async () => {
    ns = await TestNamespace.create();
    connectionName = ns.serviceName;
  });

  afterEach(async () => {
    try {
      await app?.close();
      app = undefined;
      // Closing the application closes its connections: none is left at the broker.
      await eventually(async () => expect(await brokerConnections(`${connectionName} (`)).toEqual([]));
    } finally {
      await ns.cleanup();
    }
  });

  it('names its two connections "<serviceName> (consuming)" and "<serviceName> (publishing)" by default', async () => {
    await start();
    await eventually(async () =>
      expect((await brokerConnections(`${ns.serviceName} (`)).map((c) => c.name)).toEqual([
        `${ns.serviceName} (consuming)`,
        `${ns.serviceName} (publishing)`,
      ]),
    );
  });

  it('names them after rabbitmq.connectionName when given', async () => {
    connectionName = `orders-api ${ns.id} #1`;
    await start({ options: { rabbitmq: { connectionName } } });
    await eventually(async () =>
      expect((await brokerConnections(`${connectionName} (`)).map((c) => c.name)).toEqual([
        `${connectionName} (consuming)`,
        `${connectionName} (publishing)`,
      ]),
    );
    // The service name is then in no connection's name.
    expect(await brokerConnections(ns.serviceName)).toEqual([]);
  });

  it('opens only the publishing connection with consumer.enabled: false, though it has a handler', async () => {
    await start({ options: { consumer: { enabled: false } } });
    // The consuming connection, when there is one, is opened (and listed) before the publishing one: once
    // the publishing connection is listed, a consuming one would be too.
    await eventually(async () => expect((await brokerConnections(`${connectionName} (`)).map((c) => c.name)).toContain(`${connectionName} (publishing)`));
    expect((await brokerConnections(`${connectionName} (`)).map((c) => c.name)).toEqual([`${connectionName} (publishing)`]);
  });

  it('opens only the publishing connection in a service without handlers', async () => {
    await start({ providers: [] });
    await eventually(async () => expect((await brokerConnections(`${connectionName} (`)).map((c) => c.name)).toContain(`${connectionName} (publishing)`));
    expect((await brokerConnections(`${connectionName} (`)).map((c) => c.name)).toEqual([`${connectionName} (publishing)`]);
  });

  it('negotiates rabbitmq.heartbeatSeconds on both connections', async () => {
    const url = new URL(TEST_RABBITMQ_URL);
    url.searchParams.delete('heartbeat');
    await start({ options: { rabbitmq: { url: url.toString(), heartbeatSeconds: 30 } } });
    await eventually(async () =>
      expect(await brokerConnections(`${connectionName} (`)).toEqual([
        { name: `${connectionName} (consuming)`, heartbeat: 30 },
        { name: `${connectionName} (publishing)`, heartbeat: 30 },
      ]),
    );
  });

  it('negotiates the heartbeat query parameter of rabbitmq.url over rabbitmq.heartbeatSeconds', async () => {
    const url = new URL(TEST_RABBITMQ_URL);
    url.searchParams.set('heartbeat', '7');
    await start({ options: { rabbitmq: { url: url.toString(), heartbeatSeconds: 30 } } });
    await eventually(async () =>
      expect(await brokerConnections(`${connectionName} (`)).toEqual([
        { name: `${connectionName} (consuming)`, heartbeat: 7 },
        { name: `${connectionName} (publishing)`, heartbeat: 7 },
      ]),
    );
  });

  describe('closed while its first connection is being made (app.close() during app.init())', () => {
    const connectionOf = (url?: string) =>
      new RabbitMqConnection(new IntegrationEventsConfig(testOptions(ns, url === undefined ? {} : { rabbitmq: { url } })));

    it('refuses to connect after close(), and opens nothing', async () => {
      const connection = connectionOf();
      await connection.close();
      const connecting = connection.connect();
      await expect(connecting).rejects.toThrow(/The RabbitMQ connection \(consuming\) was closed before it was established: the application is shutting down/);
      await expect(connecting).rejects.toBeInstanceOf(IntegrationEventsError);
    });

    it('closes what amqplib hands over when close() ran while it was being asked, and opens nothing', async () => {
      let closing: Promise<void> | undefined;
      // What amqplib's recovering connection reports: an attempt made (connected or failed) after close().
      const attempts: string[] = [];
      class ClosedMeanwhile extends RabbitMqConnection {
        protected override async recoveringConnection(...args: Parameters<RabbitMqConnection['recoveringConnection']>) {
          closing = this.close();
          const recovering = await super.recoveringConnection(...args);
          recovering.on('connect', () => attempts.push('connect'));
          recovering.on('connect-failed', () => attempts.push('connect-failed'));
          return recovering;
        }
      }
      const connection = new ClosedMeanwhile(new IntegrationEventsConfig(testOptions(ns)));
      await expect(connection.connect()).rejects.toThrow(/was closed before it was established/);
      await closing;
      // Stopped before its first attempt: no connection made, none tried again and again in the background.
      await consistently(() => expect(attempts).toEqual([]), { forMs: 300 });
    });

    it('closes the connection whose channels are being opened, at once, and keeps nothing of it', async () => {
      const connection = connectionOf();
      let reachedSetup!: () => void;
      const inSetup = new Promise<void>((resolve) => (reachedSetup = resolve));
      let releaseSetup!: () => void;
      const held = new Promise<void>((resolve) => (releaseSetup = resolve));
      connection.manage({
        name: 'held',
        setup: async () => {
          reachedSetup();
          await held;
        },
      });
      const outcome = connection.connect().then(
        () => 'connected',
        (error: Error) => error.message,
      );
      await inSetup;
      await connection.close();
      try {
        // Closed by close() itself, while the channel's setup still waits: not left to a broker that may never answer.
        await eventually(async () => expect(await brokerConnections(`${ns.serviceName} (`)).toEqual([]));
      } finally {
        releaseSetup();
      }
      expect(await outcome).toMatch(/was closed before it was established/);
      expect(connection.isConnected).toBe(false);
    });

    it('ends the wait for a first attempt that succeeds after close(), which amqplib reports neither way', async () => {
      const proxy = await TcpProxy.create(TEST_RABBITMQ_ADDRESS);
      try {
        await proxy.accept();
        // The attempt's handshake waits at the proxy until close() has run.
        proxy.hold();
        const connection = connectionOf(rabbitMqUrlVia(proxy.port));
        const connecting = connection.connect();
        const outcome = connecting.then(
          () => 'connected',
          (error: Error) => error.message,
        );
        await eventually(() => expect(proxy.connections).toBe(1));
        const closing = connection.close();
        proxy.release();
        await closing;
        // Without an answer either way, it would wait for ever (the test's own timeout).
        expect(await outcome).toMatch(/was closed before it was established/);
        // The attempt's connection, let through after close(), does not stay.
        await eventually(() => expect(proxy.connections).toBe(0));
      } finally {
        await proxy.stop();
      }
    });
  });
});
