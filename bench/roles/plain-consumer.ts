/**
 * A plain amqplib consumer, no framework: declares its queue, parses each body (as any real consumer
 * would), counts it and acks it. The consumer side of Limit A, Limit B, the dual write, and the
 * reference of the inbox workload.
 *
 * With `inbox`, a hand-written inbox: each message in a transaction of its own on a pg pool (BEGIN,
 * INSERT of (handler, message id) into the library's inbox table ON CONFLICT DO NOTHING, the count if
 * the row is new, COMMIT), then its ack — what a team would write for idempotent consumption. With
 * `inbox.via: 'typeorm'`, the same transaction written the way a NestJS team on TypeORM and nestjs-cls
 * writes it, so that the handler's own `@Transactional()` code would join it: `TransactionHost
 * .withTransaction()` in a CLS context of its own, the INSERT through the transaction's EntityManager,
 * on the pool (of the same size) of a Nest application with TypeORM and nestjs-cls but not the library.
 */
import * as amqp from 'amqplib';
import { Pool } from 'pg';
import { ClsService } from 'nestjs-cls';
import { TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import type { Role } from '../child';
import { HandledCounter, numberOf } from '../lib/contract';
import { DATABASE_URL, inboxTable, now, RABBITMQ_URL } from '../lib/helpers';
import { createApp } from '../lib/nest';

/** The hand-written inbox's transactions at once: as many as ours runs calls by default (`consumer.concurrency`). */
export const HAND_INBOX_CONNECTIONS = 10;

interface Args {
  exchange: string;
  queue: string;
  bindingKey: string;
  prefetch: number;
  expected: number;
  /** Subscribe only on `go` (the queue is pre-loaded meanwhile). */
  startOnGo?: boolean;
  recordTimes?: boolean;
  /**
   * A hand-written inbox in this schema's inbox table, with at most `connections` transactions at once;
   * `idleMs`: the pool's idleTimeoutMillis (paced runs: --pool-idle-ms, as ours'), pg's default when omitted.
   */
  inbox?: { schema: string; connections: number; idleMs?: number; via?: 'pg' | 'typeorm' };
  /** Send `warm` once every event numbered from this on (a paced run's warm-up) was handled. */
  warmFrom?: number;
}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(args.exchange, 'topic', { durable: true });
  await channel.assertQueue(args.queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
  await channel.bindQueue(args.queue, args.exchange, args.bindingKey);
  await channel.prefetch(args.prefetch);
  const counter = new HandledCounter(args.expected, args.recordTimes ?? true, () => io.send({ type: 'done' }), now, () => io.send({ type: 'first' }));
  if (args.warmFrom !== undefined) counter.watchRange(args.warmFrom, () => io.send({ type: 'warm', t: now() }));
  const viaTypeOrm = args.inbox?.via === 'typeorm';
  const app = viaTypeOrm ? await createApp({ providers: [], poolMax: args.inbox!.connections, poolIdleMs: args.inbox!.idleMs }) : undefined;
  const cls = app?.get(ClsService);
  const txHost = app?.get<TransactionHost<TransactionalAdapterTypeOrm>>(TransactionHost);
  const pool = args.inbox && !viaTypeOrm
    ? new Pool({
        connectionString: DATABASE_URL,
        max: args.inbox.connections,
        ...(args.inbox.idleMs !== undefined ? { idleTimeoutMillis: args.inbox.idleMs } : {}),
      })
    : undefined;
  const recordSql = args.inbox
    ? `INSERT INTO ${inboxTable(args.inbox.schema)} (handler, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1`
    : '';
  let failure: unknown;
  /** The same through TypeORM and nestjs-cls: a transaction the handler's `@Transactional()` code would join. */
  const handleOnceViaTypeOrm = async (message: amqp.ConsumeMessage): Promise<void> => {
    await cls!.run(() =>
      txHost!.withTransaction(async () => {
        const rows = (await txHost!.tx.query(recordSql, ['plain-consumer', message.properties.messageId])) as unknown[];
        if (rows.length === 1) counter.handle(numberOf(message.content));
      }),
    );
    channel.ack(message);
  };
  /** The message handled once: recorded in the inbox and counted in one transaction, then acked. */
  const handleOnce = async (message: amqp.ConsumeMessage): Promise<void> => {
    const client = await pool!.connect();
    try {
      await client.query('BEGIN');
      const { rowCount } = await client.query(recordSql, ['plain-consumer', message.properties.messageId]);
      if (rowCount === 1) counter.handle(numberOf(message.content));
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
    channel.ack(message);
  };
  const subscribe = () =>
    channel.consume(args.queue, (message) => {
      if (!message) return;
      if (args.inbox) {
        // A failure is the run's: left unacked, counted as missing.
        (viaTypeOrm ? handleOnceViaTypeOrm : handleOnce)(message).catch((error: unknown) => (failure ??= error));
        return;
      }
      counter.handle(numberOf(message.content));
      channel.ack(message);
    });

  if (!args.startOnGo) await subscribe();
  io.send({ type: 'ready' });
  const stop = io.next('stop');
  if (args.startOnGo && (await Promise.race([io.next('go').then(() => true), stop.then(() => false)]))) await subscribe();
  await stop;
  await channel.close();
  await connection.close();
  await pool?.end();
  await app?.close();
  if (failure) console.error(`a hand-written inbox transaction failed: ${String((failure as Error)?.stack ?? failure)}`);
  return counter.result();
};
