import { randomBytes } from 'node:crypto';
import * as amqp from 'amqplib';
import { Client } from 'pg';
import { createOutboxMigration } from 'nestjs-integration-events';
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
  private readonly queues = new Set<string>();
  private db: Client | undefined;
  private amqpConnection: amqp.ChannelModel | undefined;

  /** Creates the schema and the outbox table. */
  static async create(): Promise<TestNamespace> {
    const ns = new TestNamespace();
    const db = await ns.sql();
    const Migration = createOutboxMigration({ schema: ns.schema });
    await new Migration().up({ query: (text: string) => db.query(text) } as never);
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

  /** A plain amqplib connection, as a service written without this library would have. */
  async amqp(): Promise<amqp.ChannelModel> {
    if (!this.amqpConnection) {
      this.amqpConnection = await amqp.connect(TEST_RABBITMQ_URL);
      this.amqpConnection.on('error', () => undefined);
    }
    return this.amqpConnection;
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
