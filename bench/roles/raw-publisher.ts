/**
 * Plain amqplib publishing of persistent ~300-byte JSON messages on a confirm channel: as fast as a
 * window of unconfirmed messages allows (Limit A), or paced at a fixed rate (the latency reference).
 */
import * as amqp from 'amqplib';
import type { Role } from '../child';
import { EVENT_NAME, wireMessage } from '../lib/contract';
import { now, RABBITMQ_URL, sleep } from '../lib/helpers';

interface Args {
  exchange: string;
  messages: number;
  /** Most messages awaiting their confirm at once. */
  window: number;
  /** Messages per second; unset: as fast as the window allows. */
  rate?: number;
}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createConfirmChannel();
  await channel.assertExchange(args.exchange, 'topic', { durable: true });
  io.send({ type: 'ready' });
  await io.next('go');

  const sentAt = new Float64Array(args.messages);
  let outstanding = 0;
  let confirmed = 0;
  let nacked = 0;
  let slot: (() => void) | undefined;
  let allConfirmed!: () => void;
  const everyConfirm = new Promise<void>((resolve) => (allConfirmed = resolve));
  const onConfirm = (error: unknown) => {
    outstanding--;
    if (error) nacked++;
    if (++confirmed === args.messages) allConfirmed();
    slot?.();
    slot = undefined;
  };

  const t0 = now();
  for (let n = 0; n < args.messages; n++) {
    if (args.rate) {
      const wait = t0 + (n * 1_000) / args.rate - now();
      if (wait >= 1) await sleep(wait);
    } else if (outstanding >= args.window) {
      await new Promise<void>((resolve) => (slot = resolve));
    }
    const { body, options } = wireMessage(n);
    sentAt[n] = now();
    outstanding++;
    if (!channel.publish(args.exchange, EVENT_NAME, body, options, onConfirm)) {
      await new Promise((resolve) => channel.once('drain', resolve));
    }
  }
  await everyConfirm;
  const tConfirmed = now();
  io.send({ type: 'published', t0, tConfirmed });
  await io.next('stop');
  await channel.close();
  await connection.close();
  return { t0, tConfirmed, nacked, sentAt };
};
