/**
 * Handlers with the inbox vs without (ours 4): a queue pre-loaded with M messages in the library's
 * wire format, then one consumer process drains it. Handled/s between the first and the last handler
 * call (boot excluded). Variants: a plain amqplib consumer (parse + ack), the same with a hand-written
 * inbox (a transaction per message recording its id on a pg pool of 10, then the ack), that inbox
 * written through TypeORM and nestjs-cls (`TransactionHost.withTransaction()`, as a NestJS team on that
 * stack writes it, so that the handler's `@Transactional()` code would join it), ours with
 * `inbox: false`, and ours with the inbox (the default: each call in a transaction that records the
 * message id first; 10 calls at once).
 */
import { cpus } from 'node:os';
import * as amqp from 'amqplib';
import { CpuMeter } from '../lib/cpu';
import { EVENT_NAME, wireMessage } from '../lib/contract';
import { countRows, createTables } from '../lib/database';
import { check, countChecks, inboxTable, messagesLeft, Namespace, RABBITMQ_URL, type Check, type HandledCounts } from '../lib/helpers';
import { ChildHandle, peakRssMb } from '../lib/processes';
import { HAND_INBOX_CONNECTIONS } from '../roles/plain-consumer';
import { fmtRate, fmtRatio, fmtRss, fmtSpread, metric, ratio, type RunContext, type Runs, type VariantRun, type Workload } from '../lib/report';

/** Publishes `count` messages (numbered 0…count-1) to the exchange, confirmed. */
async function preload(exchange: string, count: number): Promise<void> {
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createConfirmChannel();
  for (let n = 0; n < count; n++) {
    const { body, options } = wireMessage(n);
    if (!channel.publish(exchange, EVENT_NAME, body, options)) await new Promise((resolve) => channel.once('drain', resolve));
    if (n % 1_000 === 999) await channel.waitForConfirms();
  }
  await channel.waitForConfirms();
  await connection.close();
}

async function runInbox(variant: string, context: RunContext): Promise<VariantRun> {
  const { options, harness, resources } = context;
  const ns = new Namespace(`inbox-${variant}`);
  const count = options.inboxMessages;
  const queue = ns.queue('handler');
  await createTables(resources, ns.schema, { outbox: true, inbox: true });
  resources.exchange(ns.exchange);
  resources.queue(queue);
  const tag = `inbox-${variant}-r${context.round}`;
  let consumer: ChildHandle | undefined;
  let queues = [queue];
  try {
    const checks: Check[] = [];
    if (variant === 'plain' || variant === 'plain-inbox' || variant === 'plain-inbox-typeorm') {
      consumer = await ChildHandle.start(harness, 'plain-consumer', `${tag}-consumer`, {
        exchange: ns.exchange,
        queue,
        bindingKey: EVENT_NAME,
        prefetch: options.prefetch,
        expected: count,
        recordTimes: false,
        startOnGo: true,
        ...(variant === 'plain-inbox' ? { inbox: { schema: ns.schema, connections: HAND_INBOX_CONNECTIONS } } : {}),
        ...(variant === 'plain-inbox-typeorm' ? { inbox: { schema: ns.schema, connections: HAND_INBOX_CONNECTIONS, via: 'typeorm' } } : {}),
      });
      await preload(ns.exchange, count);
      consumer.send({ type: 'go' });
    } else {
      const args = {
        exchange: ns.exchange,
        schema: ns.schema,
        serviceName: ns.serviceName,
        queue,
        inbox: variant === 'ours-inbox',
        prefetch: options.prefetch,
        ackDelayMs: options.ackDelayMs,
        expected: count,
        recordTimes: false,
      };
      // Boot once to declare the handler's queues, fill the queue, then boot again to drain it.
      const declare = await ChildHandle.start(harness, 'ours-consumer', `${tag}-declare`, { ...args, declareOnly: true });
      queues = declare.ready.queues as string[];
      resources.queue(...queues);
      await declare.stop();
      await preload(ns.exchange, count);
      consumer = await ChildHandle.start(harness, 'ours-consumer', `${tag}-consumer`, args, { profile: true });
    }
    // CPU from the first message handled to the last (the consumer's boot left out).
    await consumer.next('first', 120_000);
    const cpuBefore = context.cpu.sample({ consumer: consumer.pid });
    await consumer.next('done', Math.max(300_000, count * 10));
    const cpuAfter = context.cpu.sample({ consumer: consumer.pid });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const result = await consumer.stop();
    checks.push(...countChecks(`inbox ${variant}`, count, result.counts as HandledCounts));
    // The variant ran with the inbox it names.
    if (variant !== 'plain') {
      const recorded = variant === 'ours-inbox' || variant === 'plain-inbox' || variant === 'plain-inbox-typeorm';
      checks.push(check(`inbox ${variant}: inbox rows`, recorded ? count : 0, await countRows(inboxTable(ns.schema))));
    }
    // The consumer stopped, every message handled acked: one still queued is a retry or dead letter the counts missed.
    checks.push(check(`inbox ${variant}: messages left in the queues`, 0, await messagesLeft(queues)));
    return {
      metrics: {
        handledPerSec: (count - 1) / (((result.last as number) - (result.first as number)) / 1_000),
        'rss.consumer': peakRssMb(result),
        ...CpuMeter.perEvent(cpuBefore, cpuAfter, count - 1, cpus().length),
      },
      checks,
    };
  } finally {
    consumer?.kill();
  }
}

export const inbox: Workload = {
  name: 'inbox',
  title: 'Handlers with the inbox vs without',
  variants: () => ['plain', 'plain-inbox', 'plain-inbox-typeorm', 'ours-no-inbox', 'ours-inbox'],
  run: runInbox,
  summarize(runs: Runs, options) {
    const title = `Consuming a pre-loaded queue (${options.inboxMessages.toLocaleString('en-US')} msgs, prefetch ${options.prefetch})`;
    const labels: Record<string, string> = {
      plain: 'plain amqplib consumer (parse + ack)',
      'plain-inbox': 'plain consumer, hand-written inbox',
      'plain-inbox-typeorm': 'the same inbox through TypeORM and nestjs-cls',
      'ours-no-inbox': 'ours, inbox: false',
      'ours-inbox': 'ours, with the inbox (default)',
    };
    const rows = Object.keys(labels).map((variant) => {
      const handled = metric(runs[variant], 'handledPerSec');
      return {
        workload: title,
        variant: labels[variant]!,
        throughput: fmtRate(handled, 'handled/s'),
        spread: fmtSpread(handled),
        ratio:
          variant === 'ours-inbox'
            ? `${fmtRatio(ratio(runs['ours-inbox'], runs['ours-no-inbox'], 'handledPerSec'), 'no inbox')}, ` +
              `${fmtRatio(ratio(runs['ours-inbox'], runs['plain-inbox'], 'handledPerSec'), 'hand-written inbox')}, ` +
              fmtRatio(ratio(runs['ours-inbox'], runs['plain-inbox-typeorm'], 'handledPerSec'), 'through TypeORM')
            : variant === 'ours-no-inbox' || variant === 'plain-inbox' || variant === 'plain-inbox-typeorm'
              ? fmtRatio(ratio(runs[variant], runs.plain, 'handledPerSec'), 'plain')
              : '',
        rss: fmtRss(runs[variant]),
      };
    });
    return { rows, targets: [] };
  },
};
