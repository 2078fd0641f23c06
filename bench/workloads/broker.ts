/**
 * Limit A — the raw broker: plain amqplib publishing ~300-byte persistent JSON messages on a confirm
 * channel with a window of unconfirmed messages, and a plain consumer acking them, each in its own
 * process. Messages/s from the first publish to the last message consumed.
 */
import { cpus } from 'node:os';
import { EVENT_NAME } from '../lib/contract';
import { CpuMeter } from '../lib/cpu';
import { check, countChecks, messagesLeft, Namespace, type HandledCounts } from '../lib/helpers';
import { ChildHandle, peakRssMb } from '../lib/processes';
import { fmtRate, fmtRss, fmtSpread, metric, type Runs, type VariantRun, type Workload } from '../lib/report';

export const broker: Workload = {
  name: 'broker',
  title: 'Limit A: raw broker',
  variants: () => ['amqplib'],
  async run(_variant, context): Promise<VariantRun> {
    const { options, harness, resources } = context;
    const ns = new Namespace('broker');
    const count = options.brokerMessages;
    const queue = ns.queue('sink');
    resources.exchange(ns.exchange);
    resources.queue(queue);
    const tag = `broker-r${context.round}`;
    const consumer = await ChildHandle.start(harness, 'plain-consumer', `${tag}-consumer`, {
      exchange: ns.exchange,
      queue,
      bindingKey: EVENT_NAME,
      prefetch: options.prefetch,
      expected: count,
      recordTimes: false,
    });
    const publisher = await ChildHandle.start(harness, 'raw-publisher', `${tag}-publisher`, { exchange: ns.exchange, messages: count, window: options.window });
    try {
      const pids = { publisher: publisher.pid, consumer: consumer.pid };
      const cpuBefore = context.cpu.sample(pids);
      publisher.send({ type: 'go' });
      await consumer.next('done', Math.max(300_000, count * 5));
      const cpuAfter = context.cpu.sample(pids);
      const published = await publisher.next('published');
      const pub = await publisher.stop();
      const con = await consumer.stop();
      const t0 = published.t0 as number;
      return {
        metrics: {
          messagesPerSec: count / (((con.last as number) - t0) / 1_000),
          confirmedPerSec: count / (((published.tConfirmed as number) - t0) / 1_000),
          'rss.publisher': peakRssMb(pub),
          'rss.consumer': peakRssMb(con),
          ...CpuMeter.perEvent(cpuBefore, cpuAfter, count, cpus().length),
        },
        checks: [
          check('Limit A: nacked', 0, pub.nacked as number),
          ...countChecks('Limit A', count, con.counts as HandledCounts),
          check('Limit A: messages left in the queue', 0, await messagesLeft([queue])),
        ],
      };
    } finally {
      publisher.kill();
      consumer.kill();
    }
  },
  summarize(runs: Runs, options) {
    const title = `Limit A: raw broker (${options.brokerMessages.toLocaleString('en-US')} msgs, window ${options.window}, prefetch ${options.prefetch})`;
    const consumed = metric(runs.amqplib, 'messagesPerSec');
    const confirmed = metric(runs.amqplib, 'confirmedPerSec');
    return {
      rows: [
        { workload: title, variant: 'amqplib publish+confirm → consume+ack', throughput: fmtRate(consumed, 'msgs/s'), spread: fmtSpread(consumed), rss: fmtRss(runs.amqplib) },
        { workload: title, variant: 'amqplib publish: all confirmed', throughput: fmtRate(confirmed, 'msgs/s'), spread: fmtSpread(confirmed) },
      ],
      targets: [],
    };
  },
};
