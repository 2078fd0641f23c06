/**
 * Limit B: the minimal hand-written outbox relay, no framework. One pg connection and one confirm
 * channel; per round: claim a batch (UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) setting a
 * lease), publish it, wait for the confirms, mark the rows sent. On the library's table (same shape,
 * same indexes) and in the library's wire format.
 */
import * as amqp from 'amqplib';
import { Client } from 'pg';
import type { Role } from '../child';
import { DATABASE_URL, now, outboxTable, RABBITMQ_URL, sleep } from '../lib/helpers';

interface Args {
  exchange: string;
  schema: string;
  batchSize: number;
  /** Pause when there is nothing to claim. */
  idlePollMs: number;
}

interface Row {
  id: string;
  event_name: string;
  payload: string;
  headers: Record<string, string | number>;
}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const table = outboxTable(args.schema);
  const claimSql =
    `UPDATE ${table} SET locked_until = now() + interval '30 seconds' WHERE id IN (` +
    `SELECT id FROM ${table} WHERE status = 'pending' AND available_at <= now() ` +
    'AND (locked_until IS NULL OR locked_until <= now()) ORDER BY available_at, seq LIMIT $1 FOR UPDATE SKIP LOCKED) ' +
    'RETURNING id, event_name, payload, headers';
  const markSql = `UPDATE ${table} SET status = 'sent', sent_at = now(), locked_until = NULL WHERE id = ANY($1::uuid[])`;

  const db = new Client({ connectionString: DATABASE_URL });
  await db.connect();
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createConfirmChannel();
  await channel.assertExchange(args.exchange, 'topic', { durable: true });
  io.send({ type: 'ready' });
  await io.next('go');

  let stopping = false;
  void io.next('stop').then(() => (stopping = true));
  const t0 = now();
  let relayed = 0;
  while (!stopping) {
    const { rows } = await db.query<Row>(claimSql, [args.batchSize]);
    if (rows.length === 0) {
      await sleep(args.idlePollMs);
      continue;
    }
    for (const row of rows) {
      const published = channel.publish(args.exchange, row.event_name, Buffer.from(row.payload), {
        messageId: row.id,
        contentType: 'application/json',
        persistent: true,
        headers: row.headers,
      });
      if (!published) await new Promise((resolve) => channel.once('drain', resolve));
    }
    await channel.waitForConfirms();
    await db.query(markSql, [rows.map((row) => row.id)]);
    relayed += rows.length;
  }
  await channel.close();
  await connection.close();
  await db.end();
  return { t0, relayed };
};
