import { randomBytes } from 'node:crypto';
import * as amqp from 'amqplib';
import { Client } from 'pg';
import { createInboxMigration, createOutboxMigration } from 'nestjs-integration-events';
import { TEST_DATABASE_URL, TEST_RABBITMQ_URL } from './services';

/**
 * Everything one test creates, under names no other test uses: a PostgreSQL schema (with the outbox
 * table, created by the library's own migration), a topic exchange and a service name (so handler
 * queues are `<serviceName>.<Handler>`). `cleanup()` drops all of it.
 */
export class TestNamespace {
  readonly id = randomBytes(5).toString('hex');
  readonly schema = `t_${this.id}`;
  readonly exchange = `ie-test-${this.id}`;
  readonly serviceName = `svc-${this.id}`;
  readonly outboxTable = `"${this.schema}"."integration_events_outbox"`;
  readonly inboxTable = `"${this.schema}"."integration_events_inbox"`;
  private readonly queues = new Set<string>();
  private db: Client | undefined;
  private amqpConnection: Promise<amqp.ChannelModel> | undefined;

  /** Creates the schema and the outbox table. */
  static async create(): Promise<TestNamespace> {
    const ns = new TestNamespace();
    const db = await ns.sql();
    for (const Migration of [createOutboxMigration({ schema: ns.schema }), createInboxMigration({ schema: ns.schema })]) {
      // As much of a QueryRunner as the migrations use: query(text, parameters) giving the rows.
      await new Migration().up({ query: async (text: string, parameters?: unknown[]) => (await db.query(text, parameters)).rows } as never);
    }
    return ns;
  }

  /** A PostgreSQL client for assertions and setup (one per namespace). */
  async sql(): Promise<Client> {
    if (!this.db) {
      this.db = new Client({ connectionString: TEST_DATABASE_URL });
      await this.db.connect();
    }
    return this.db;
  }

  /** Rows of the outbox, oldest first. */
  async outboxRows(): Promise<Array<{ id: string; status: string; attempts: number; last_error: string | null; event_name: string }>> {
    const db = await this.sql();
    const { rows } = await db.query(`SELECT id, status, attempts, last_error, event_name FROM ${this.outboxTable} ORDER BY seq`);
    return rows;
  }

  /**
   * Inserts `count` pending rows straight into the outbox, as another process (or a relay-less
   * service) would have committed them: valid contract headers, body `{"n": <i>}`.
   */
  async insertOutboxRows(count: number, eventName = 'ordering.order-created', version = 1): Promise<void> {
    const db = await this.sql();
    await db.query(
      `INSERT INTO ${this.outboxTable} (id, event_name, event_version, payload, headers, occurred_at)
       SELECT gen_random_uuid(), $1::text, $2::int, json_build_object('orderId', 'bulk-' || i, 'placedAt', now())::text,
              jsonb_build_object('ie-event-name', $1::text, 'ie-event-version', $2::int,
                                 'ie-occurred-at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                                 'ie-source-service', 'elsewhere', 'ie-correlation-id', 'bulk'),
              now()
       FROM generate_series(1, $3) AS i`,
      [eventName, version, count],
    );
  }

  /** A plain amqplib connection, as a service written without this library would have. */
  async amqp(): Promise<amqp.ChannelModel> {
    // The promise is kept, not the connection: calls made at once (a Promise.all of queueDepth) share one
    // connection instead of each opening its own, which cleanup would never close.
    this.amqpConnection ??= amqp.connect(TEST_RABBITMQ_URL).then((connection) => {
      connection.on('error', () => undefined);
      return connection;
    });
    return this.amqpConnection;
  }

  /**
   * Publishes raw bytes to the namespace's exchange, as a foreign (or hostile) publisher would, and
   * waits for the broker's confirm. Contract headers default to valid ones for `routingKey`.
   */
  async publishRaw(
    routingKey: string,
    body: Buffer | string,
    {
      headers = {},
      messageId = randomBytes(8).toString('hex'),
      properties = {},
    }: { headers?: Record<string, unknown>; messageId?: string | null; properties?: Pick<amqp.Options.Publish, 'priority' | 'replyTo'> } = {},
  ): Promise<string | null> {
    const channel = await (await this.amqp()).createConfirmChannel();
    await channel.assertExchange(this.exchange, 'topic', { durable: true });
    channel.publish(this.exchange, routingKey, Buffer.isBuffer(body) ? body : Buffer.from(body), {
      ...(messageId === null ? {} : { messageId }),
      persistent: true,
      contentType: 'application/json',
      ...properties,
      headers: {
        'ie-event-name': routingKey,
        'ie-event-version': 1,
        'ie-occurred-at': new Date().toISOString(),
        ...headers,
      },
    });
    await channel.waitForConfirms();
    await channel.close();
    return messageId;
  }

  /** Number of ready messages in a queue. */
  async queueDepth(queue: string): Promise<number> {
    const channel = await (await this.amqp()).createChannel();
    // A missing queue closes the channel (404): the check rejects, and the connection stays usable.
    channel.on('error', () => undefined);
    try {
      return (await channel.checkQueue(queue)).messageCount;
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  /** Takes every ready message out of a queue (acknowledged: they are gone afterwards). */
  async drainQueue(queue: string): Promise<amqp.GetMessage[]> {
    const channel = await (await this.amqp()).createChannel();
    const messages: amqp.GetMessage[] = [];
    try {
      for (;;) {
        const message = await channel.get(queue, { noAck: true });
        if (!message) return messages;
        messages.push(message);
      }
    } finally {
      await channel.close();
    }
  }

  /** Remembers a queue to delete at cleanup. */
  trackQueue(name: string): string {
    this.queues.add(name);
    return name;
  }

  /**
   * Declares a plain queue bound to the namespace's exchange and collects what arrives on it, raw.
   * For asserting on the wire format, independent of the library's consumer.
   */
  async probe(routingKey: string): Promise<{ messages: amqp.ConsumeMessage[]; queue: string }> {
    const channel = await (await this.amqp()).createChannel();
    await channel.assertExchange(this.exchange, 'topic', { durable: true });
    const queue = this.trackQueue(`${this.serviceName}.probe.${randomBytes(3).toString('hex')}`);
    await channel.assertQueue(queue, { durable: false });
    await channel.bindQueue(queue, this.exchange, routingKey);
    const messages: amqp.ConsumeMessage[] = [];
    await channel.consume(queue, (message) => message && messages.push(message), { noAck: true });
    return { messages, queue };
  }

  async cleanup(): Promise<void> {
    try {
      const connection = await this.amqp();
      for (const queue of this.queues) {
        const channel = await connection.createChannel();
        channel.on('error', () => undefined);
        await channel.deleteQueue(queue).catch(() => undefined);
        await channel.close().catch(() => undefined);
      }
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      await channel.deleteExchange(this.exchange).catch(() => undefined);
      await connection.close();
    } finally {
      const db = await this.sql();
      await db.query(`DROP SCHEMA IF EXISTS "${this.schema}" CASCADE`);
      await db.end();
    }
  }
}
